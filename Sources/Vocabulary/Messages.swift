// Swift mirrors of the messages in proto/mambaformer.proto. Nodes use only these types;
// the protobuf-c structs stay inside the Wire target (see Codec.swift).

/// Protocol version carried in every envelope: major * 1000 + minor.
public enum WireProtocol {
    public static let major: UInt32 = 1
    /// 1: `Error.reason`. 2: deadlines as time left (`deadline_ms`), beside the wall-clock
    /// instant that 1.1 readers use. 3: `PoolStatusRequest` / `PoolStatus` for autoscalers.
    public static let minor: UInt32 = 3
    public static var version: UInt32 { major * 1000 + minor }
    public static func major(of version: UInt32) -> UInt32 { version / 1000 }
}

/// Ceilings every node shares.
public enum ProtocolLimits {
    /// The largest `max_new_tokens` a router accepts (the gateway's `limits.max_tokens` stays
    /// under it); experts size the answer they read after it.
    public static let maxNewTokens: UInt32 = 1024
}

public enum PoolKind: Int, Sendable, CaseIterable, CustomStringConvertible {
    case unspecified = 0, emamba = 1, et5 = 2
    public var description: String {
        switch self {
        case .unspecified: return "unspecified"
        case .emamba: return "emamba"
        case .et5: return "et5"
        }
    }
    /// The other expert pool (for fallback).
    public var other: PoolKind {
        switch self {
        case .emamba: return .et5
        case .et5: return .emamba
        case .unspecified: return .unspecified
        }
    }
}

public enum ErrorCode: Int, Sendable {
    case unspecified = 0, badRequest, overloaded, unavailable, deadline, cancelled, internalError, version, unauthorized
}

public enum FinishReason: Int, Sendable {
    case none = 0, eos, length, deadline, cancelled
}

public struct Sampling: Sendable, Equatable {
    public var temperature: Float = 0
    public var topP: Float = 0
    public var topK: UInt32 = 0
    public var seed: UInt64 = 0
    public var repetitionPenalty: Float = 0
    public init(temperature: Float = 0, topP: Float = 0, topK: UInt32 = 0, seed: UInt64 = 0, repetitionPenalty: Float = 0) {
        self.temperature = temperature; self.topP = topP; self.topK = topK; self.seed = seed
        self.repetitionPenalty = repetitionPenalty
    }
}

public struct Policy: Sendable, Equatable {
    /// What a router uses when a request gives no cost weight and its checkpoint names no default.
    public static let fallbackCostWeight: Float = 0.5
    public var costWeight: Float = Policy.fallbackCostWeight
    public var forced: PoolKind = .unspecified
    /// 1.4: the client gave no cost weight: the router uses its checkpoint's
    /// `default_cost_weight` instead of `costWeight` (which stays 0.5 for older routers).
    public var defaultCostWeight = false
    public init(costWeight: Float = Policy.fallbackCostWeight, forced: PoolKind = .unspecified, defaultCostWeight: Bool = false) {
        self.costWeight = costWeight; self.forced = forced; self.defaultCostWeight = defaultCostWeight
    }
}

public struct Ready: Sendable, Equatable {
    public var pool: PoolKind
    public var modelId: String
    public var replicaId: String
    public var capacity: UInt32
    public var softwareVersion: String
    public init(pool: PoolKind, modelId: String, replicaId: String, capacity: UInt32, softwareVersion: String) {
        self.pool = pool; self.modelId = modelId; self.replicaId = replicaId
        self.capacity = capacity; self.softwareVersion = softwareVersion
    }
}

public struct Heartbeat: Sendable, Equatable {
    public var load: UInt32
    /// Router -> gateway only: live replicas per pool, for the gateway's /readyz.
    public var emambaReplicas: UInt32
    public var et5Replicas: UInt32
    /// 1.3, expert -> router: draining; route nothing new to it.
    public var draining: Bool
    /// 1.4, expert -> router: this router's share of the replica's capacity now (0: `Ready`'s).
    public var capacity: UInt32
    public init(load: UInt32 = 0, emambaReplicas: UInt32 = 0, et5Replicas: UInt32 = 0, draining: Bool = false,
                capacity: UInt32 = 0) {
        self.load = load; self.emambaReplicas = emambaReplicas; self.et5Replicas = et5Replicas; self.draining = draining
        self.capacity = capacity
    }
}

public struct Disconnect: Sendable, Equatable {
    public var reason: String
    public init(reason: String) { self.reason = reason }
}

public struct AnswerRequest: Sendable, Equatable {
    public var requestId: String
    public var question: String
    public var context: String = ""
    public var maxNewTokens: UInt32 = 64
    public var policy = Policy()
    public var sampling = Sampling()
    /// The deadline as a wall-clock instant, for 1.1 readers (0: none). See `Deadline`.
    public var deadlineUnixMs: UInt64 = 0
    public var spanTokens: UInt32 = 0
    /// 1.2: the time left when sent (0: none given). See `Deadline`.
    public var deadlineMs: UInt32 = 0
    /// 1.4: the answer so far when it moves to another router (nil: a new answer).
    public var resume: AnswerProgress?
    /// 1.4: alternatives per token wanted (0 = none, at most `TopLogprobs.max`).
    public var topLogprobs: UInt32 = 0
    public init(requestId: String, question: String, context: String = "", maxNewTokens: UInt32 = 64,
                policy: Policy = Policy(), sampling: Sampling = Sampling(), deadlineUnixMs: UInt64 = 0,
                spanTokens: UInt32 = 0, deadlineMs: UInt32 = 0, resume: AnswerProgress? = nil, topLogprobs: UInt32 = 0) {
        self.requestId = requestId; self.question = question; self.context = context
        self.maxNewTokens = maxNewTokens; self.policy = policy; self.sampling = sampling
        self.deadlineUnixMs = deadlineUnixMs; self.spanTokens = spanTokens; self.deadlineMs = deadlineMs
        self.resume = resume; self.topLogprobs = topLogprobs
    }
}

public struct Cancel: Sendable, Equatable {
    public var requestId: String
    public init(requestId: String) { self.requestId = requestId }
}

public struct WireErrorBody: Sendable, Equatable, Error {
    public var code: ErrorCode
    public var message: String
    public var retryable: Bool
    /// A finer cause than `code` (protocol 1.1), one of `Reason`; "" when none.
    public var reason: String
    public init(code: ErrorCode, message: String, retryable: Bool, reason: String = "") {
        self.code = code; self.message = message; self.retryable = retryable; self.reason = reason
    }

    /// The `reason` values this version sends.
    public enum Reason {
        /// The prompt is over `limits.max_prompt_bytes` or `limits.max_prompt_tokens` (code badRequest).
        public static let promptTooLong = "prompt_too_long"
        /// Made by a gateway, never sent: its connection to the answer's router dropped or the
        /// router fell silent, so the answer may continue on another router (`RouterPool`).
        public static let routerLost = "router_lost"
    }
}

/// One alternative at a step (1.4): a token, its text decoded on its own, its log-probability.
public struct TokenLogprob: Sendable, Equatable {
    public var tokenId: UInt32
    public var text: String
    public var logprob: Float
    public init(tokenId: UInt32, text: String, logprob: Float) { self.tokenId = tokenId; self.text = text; self.logprob = logprob }
}

public struct Piece: Sendable, Equatable {
    public var text: String
    public var tokenId: UInt32
    public var logprob: Float
    public var entropy: Float
    /// 1.4: the most likely tokens at this step, most likely first (when asked for).
    public var top: [TokenLogprob]
    public init(text: String, tokenId: UInt32, logprob: Float = 0, entropy: Float = 0, top: [TokenLogprob] = []) {
        self.text = text; self.tokenId = tokenId; self.logprob = logprob; self.entropy = entropy; self.top = top
    }
}

/// The most alternatives per token a request may ask for (OpenAI's `top_logprobs` limit is 20;
/// ours is 5: every alternative travels with every token).
public enum TopLogprobs {
    public static let max: UInt32 = 5
}

public struct SpanRequest: Sendable, Equatable {
    public var requestId: String
    public var spanIndex: UInt32
    public var prompt: String
    public var answerSoFar: String
    public var maxNewTokens: UInt32
    public var sampling = Sampling()
    /// The deadline as a wall-clock instant, for 1.1 readers (0: none). See `Deadline`.
    public var deadlineUnixMs: UInt64 = 0
    public var sessionHint: String = ""
    public var answerTokensBefore: UInt32 = 0
    /// 1.2: the time left when sent (0: none given). See `Deadline`.
    public var deadlineMs: UInt32 = 0
    /// 1.4: alternatives per token in `Piece.top` (0 = none, at most `TopLogprobs.max`).
    public var topLogprobs: UInt32 = 0
    public init(requestId: String, spanIndex: UInt32, prompt: String, answerSoFar: String, maxNewTokens: UInt32,
                sampling: Sampling = Sampling(), deadlineUnixMs: UInt64 = 0, sessionHint: String = "",
                answerTokensBefore: UInt32 = 0, deadlineMs: UInt32 = 0, topLogprobs: UInt32 = 0) {
        self.requestId = requestId; self.spanIndex = spanIndex; self.prompt = prompt
        self.answerSoFar = answerSoFar; self.maxNewTokens = maxNewTokens; self.sampling = sampling
        self.deadlineUnixMs = deadlineUnixMs; self.sessionHint = sessionHint
        self.answerTokensBefore = answerTokensBefore; self.deadlineMs = deadlineMs; self.topLogprobs = topLogprobs
    }
}

public struct SpanResult: Sendable, Equatable {
    public var requestId: String
    public var spanIndex: UInt32
    public var pieces: [Piece] = []
    public var text: String = ""
    public var finish: FinishReason = .none
    public var computeUs: UInt64 = 0
    public var cachedPrefixTokens: UInt32 = 0
    public var promptTokens: UInt32 = 0
    public var replicaId: String = ""
    public var pool: PoolKind = .unspecified
    public var gateScore: Float = 0
    public var queueUs: UInt64 = 0
    public init(requestId: String, spanIndex: UInt32, pieces: [Piece] = [], text: String = "",
                finish: FinishReason = .none, computeUs: UInt64 = 0, cachedPrefixTokens: UInt32 = 0,
                promptTokens: UInt32 = 0, replicaId: String = "", pool: PoolKind = .unspecified,
                gateScore: Float = 0, queueUs: UInt64 = 0) {
        self.requestId = requestId; self.spanIndex = spanIndex; self.pieces = pieces; self.text = text
        self.finish = finish; self.computeUs = computeUs; self.cachedPrefixTokens = cachedPrefixTokens
        self.promptTokens = promptTokens; self.replicaId = replicaId; self.pool = pool
        self.gateScore = gateScore; self.queueUs = queueUs
    }
}

public struct DoneStats: Sendable, Equatable {
    public var finish: FinishReason = .eos
    public var spans: UInt32 = 0
    public var promptTokens: UInt32 = 0
    public var completionTokens: UInt32 = 0
    public var emambaTokens: UInt32 = 0
    public var et5Tokens: UInt32 = 0
    public var totalUs: UInt64 = 0
    public var queueUs: UInt64 = 0
    public var retries: UInt32 = 0
    public var gateKind: String = ""
    public init(finish: FinishReason = .eos, spans: UInt32 = 0, promptTokens: UInt32 = 0,
                completionTokens: UInt32 = 0, emambaTokens: UInt32 = 0, et5Tokens: UInt32 = 0,
                totalUs: UInt64 = 0, queueUs: UInt64 = 0, retries: UInt32 = 0, gateKind: String = "") {
        self.finish = finish; self.spans = spans; self.promptTokens = promptTokens
        self.completionTokens = completionTokens; self.emambaTokens = emambaTokens; self.et5Tokens = et5Tokens
        self.totalUs = totalUs; self.queueUs = queueUs; self.retries = retries; self.gateKind = gateKind
    }
}

public struct AnswerEvent: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case span(SpanResult)
        case done(DoneStats)
        case error(WireErrorBody)
    }
    public var requestId: String
    public var kind: Kind
    public init(requestId: String, kind: Kind) { self.requestId = requestId; self.kind = kind }
}

/// One pool's load at one router (1.3), what an autoscaler sizes the pool by.
public struct PoolLoad: Sendable, Equatable {
    /// Spans dispatched to a replica and not finished.
    public var spansRunning: UInt32
    /// Spans waiting at the router for a free replica.
    public var spansQueued: UInt32
    public var replicasReady: UInt32
    /// Replicas finishing their spans before they exit (they take no new ones).
    public var replicasDraining: UInt32
    /// The ready replicas' capacity, summed.
    public var capacity: UInt32
    public init(spansRunning: UInt32 = 0, spansQueued: UInt32 = 0, replicasReady: UInt32 = 0,
                replicasDraining: UInt32 = 0, capacity: UInt32 = 0) {
        self.spansRunning = spansRunning; self.spansQueued = spansQueued; self.replicasReady = replicasReady
        self.replicasDraining = replicasDraining; self.capacity = capacity
    }
    /// Running and queued: the demand on the pool.
    public var ongoing: UInt32 { spansRunning &+ spansQueued }
}

/// Router -> autoscaler (1.3): every pool's load.
public struct PoolStatus: Sendable, Equatable {
    public var emamba: PoolLoad
    public var et5: PoolLoad
    public init(emamba: PoolLoad = PoolLoad(), et5: PoolLoad = PoolLoad()) { self.emamba = emamba; self.et5 = et5 }
    public subscript(pool: PoolKind) -> PoolLoad {
        get { pool == .et5 ? et5 : emamba }
        set { if pool == .et5 { et5 = newValue } else { emamba = newValue } }
    }
}

/// One ZeroMQ message body.
public enum Body: Sendable, Equatable {
    case ready(Ready)
    case heartbeat(Heartbeat)
    case disconnect(Disconnect)
    case answerRequest(AnswerRequest)
    case answerEvent(AnswerEvent)
    case cancel(Cancel)
    case spanRequest(SpanRequest)
    case spanResult(SpanResult)
    case error(WireErrorBody)
    /// 1.3: an autoscaler asks a router for `poolStatus`.
    case poolStatusRequest
    case poolStatus(PoolStatus)
}

public struct Envelope: Sendable, Equatable {
    public var version: UInt32
    public var body: Body
    public init(_ body: Body, version: UInt32 = WireProtocol.version) {
        self.version = version; self.body = body
    }
}
