import ClusterConfig
import Gate
import Wire

/// A ZeroMQ peer's routing identity (the first frame on a ROUTER socket).
public typealias PeerIdentity = [UInt8]

/// What the router decides to send; the event loop (RouterNode) performs it.
public enum RouterAction: Equatable {
    case toGateway(PeerIdentity, Envelope)
    case toExpert(PeerIdentity, Envelope)
}

/// Defaults of settings come from the schema (their one home); the rest are the core's own.
public struct RouterConfig: Sendable {
    /// Tokens per span when the request does not say.
    public var spanTokens = UInt32(Schema.defaultInt("router.span_tokens"))
    /// Tokens of an answer's first span (0: as the others): a shorter first span brings the
    /// first text sooner, at the cost of one more hand-over per answer.
    public var firstSpanTokens = UInt32(Schema.defaultInt("router.first_span_tokens"))
    public var heartbeatIntervalMs = UInt64(Schema.defaultInt("router.heartbeat_ms"))
    /// A peer silent for this many heartbeat intervals is dead (Majordomo's default: 3).
    public var liveness: UInt64 = 3
    /// A gateway silent this long is gone, and its answers with it (gateways heartbeat every
    /// second whatever the router's interval, hence a floor of three of theirs).
    public var gatewayLivenessMs: UInt64 { max(heartbeatIntervalMs * liveness, 3_000) }
    /// Admission control: new requests are refused (`overloaded`, retryable) beyond these.
    public var maxActiveRequests = Schema.defaultInt("limits.max_requests")
    public var maxQueuedSpansPerPool = Schema.defaultInt("limits.max_queued_spans")
    /// When the gate's pool is saturated, use the other pool instead of refusing.
    public var fallbackOnOverload = Schema.defaultBool("limits.fallback_on_overload")
    /// Attempts per span before the request fails (a retryable failure, e.g. a draining replica
    /// handing a span back, is retried on another replica).
    public var maxAttemptsPerSpan = 4
    /// Replicas that may die (or fall silent) while running one span before its request fails
    /// instead of being retried: a span that kills every replica it visits (a poison span)
    /// must not take down the whole pool in turn.
    public var maxReplicaDeathsPerSpan = 2
    public var defaultDeadlineMs: UInt64 = 120_000
    public var maxNewTokensLimit: UInt32 = ProtocolLimits.maxNewTokens
    /// Largest prompt (question + context) in UTF-8 bytes, checked before anything else.
    public var maxPromptBytes = Schema.defaultInt("limits.max_prompt_bytes")
    /// Largest prompt in each pool's tokens (see `PromptCounter`).
    public var maxPromptTokens = Schema.defaultInt("limits.max_prompt_tokens")
    /// The cost weight of requests that give none (`Policy.defaultCostWeight`): the
    /// checkpoint's `default_cost_weight`, else 0.5.
    public var defaultCostWeight = Policy.fallbackCostWeight
    public init() {}
}

/// Counts a canonical prompt in one pool's tokens, as that pool's experts will see it (after
/// normalization, with the encoder's special tokens). The router counts with both pools'
/// tokenizers before the gate runs: characters say nothing about what a model sees (NFKC turns
/// one `㏂` into four letters), and a span may move to either pool.
public protocol PromptCounter {
    func promptTokens(_ prompt: String, pool: PoolKind) throws -> Int
}

/// Counters the tests and the metrics read.
public struct RouterStats: Sendable, Equatable {
    public var requests = 0
    public var requestsDone = 0
    public var requestsFailed = 0
    public var spansDispatched = 0
    public var spanRetries = 0
    public var deadlineMisses = 0
    public var malformedFrames = 0
    /// Requests refused for a prompt over `maxPromptBytes` or `maxPromptTokens`.
    public var promptsTooLong = 0
    /// Requests failed by the poison-span rule (`maxReplicaDeathsPerSpan`).
    public var poisonSpans = 0
    /// Requests cancelled because their gateway went silent.
    public var orphansCancelled = 0
    /// `Ready`s refused because their replica id is bound to another key.
    public var replicaIdsRefused = 0
    /// Replicas and gateways cut off because SIGHUP took their key off an allow-list.
    public var peersRevoked = 0
    public var overloaded = 0
    /// Answers another router started, continued here (`AnswerRequest.resume`).
    public var resumed = 0
    public var fallbacks = 0
    public var lateResults = 0
    public var tokens: [PoolKind: Int] = [:]
    public var spans: [PoolKind: Int] = [:]
    /// Spans per replica id, at most `maxReplicaKeys` ids (then "other").
    public var spansByReplica: [String: Int] = [:]
    public static let maxReplicaKeys = 256
    /// Replica ids bound to keys at most (ids not registered now are forgotten first).
    public static let maxReplicaBindings = 4096
    /// Longest replica or model id a `Ready` may carry.
    public static let maxReplicaIdBytes = 128
}

/// The router's whole state machine, free of sockets and clocks so that it can be tested
/// directly: each input (a frame from a gateway or an expert, or a clock tick) returns
/// the messages to send. `now` and every instant in here are monotonic milliseconds; messages
/// carry deadlines as time left (`deadlineMs`), which `RouterNode` reconciles with 1.1 peers'
/// wall-clock instants at its edge. Follows the Majordomo pattern: experts announce a pool with
/// `Ready`, heartbeats run both ways, a silent expert is dead after `liveness`
/// intervals and its in-flight spans are re-dispatched (span requests are self-contained,
/// so a retry is always safe).
public final class RouterCore {
    struct SpanKey: Hashable { var requestId: String; var spanIndex: UInt32 }

    final class Replica {
        let identity: PeerIdentity
        let ready: Ready
        /// The CURVE key its connection authenticated with ("" without CURVE).
        let key: String
        var inflight: Set<SpanKey> = []
        var lastSeenMs: UInt64
        /// Spans this router may have in flight there: `Ready`'s capacity, or the share the
        /// replica gives this router when it serves several (1.4 heartbeats; never more).
        var capacity: UInt32
        init(identity: PeerIdentity, ready: Ready, key: String, now: UInt64) {
            self.identity = identity; self.ready = ready; self.key = key; self.lastSeenMs = now
            self.capacity = ready.capacity
        }
        /// It handed a span back as unavailable (it is draining for a shutdown or restart): it
        /// finishes what it runs but gets nothing new, or a span would bounce back to it until
        /// its attempts ran out.
        var draining = false
        var hasRoom: Bool { !draining && inflight.count < max(1, Int(capacity)) }
    }

    final class ActiveRequest {
        let request: AnswerRequest
        let gateway: PeerIdentity
        let prompt: String
        let deadlineMs: UInt64
        let startedMs: UInt64
        /// The answer so far, and what the gate reads of it.
        var progress = AnswerProgress()
        var affinity: [PoolKind: PeerIdentity] = [:]
        // The span currently queued or in flight.
        var span: SpanRequest?
        var spanPool: PoolKind = .emamba
        var spanScore: Float = 0
        var spanQueuedMs: UInt64 = 0
        var spanAttempts = 0
        /// Replicas that died while running the current span (the poison-span rule).
        var spanReplicaDeaths = 0
        var queueUs: UInt64 = 0
        var retries: UInt32 = 0
        init(request: AnswerRequest, gateway: PeerIdentity, prompt: String, deadlineMs: UInt64, now: UInt64) {
            self.request = request; self.gateway = gateway; self.prompt = prompt
            self.deadlineMs = deadlineMs; self.startedMs = now
        }
    }

    struct Inflight { var replica: PeerIdentity; var pool: PoolKind; var dispatchedMs: UInt64 }

    public let config: RouterConfig
    public let gate: SpanGate
    /// nil: prompts are bounded in bytes only (unit tests of other behaviour).
    public let counter: PromptCounter?
    public private(set) var stats = RouterStats()

    var replicas: [PeerIdentity: Replica] = [:]
    var requests: [String: ActiveRequest] = [:]
    var queues: [PoolKind: [SpanKey]] = [.emamba: [], .et5: []]
    var inflight: [SpanKey: Inflight] = [:]
    var gateways: [PeerIdentity: UInt64] = [:]
    /// The key each gateway connection authenticated with ("" without CURVE).
    var gatewayKeys: [PeerIdentity: String] = [:]
    /// Replica id → the key that registered it first: one key may hold several ids, another
    /// key cannot take one over (and with it the id's statistics and the operator's trust).
    var replicaOwners: [String: String] = [:]
    var lastHeartbeatMs: UInt64 = 0
    /// Set by `drain()`: no new requests, finish the admitted ones.
    public private(set) var draining = false

    public init(config: RouterConfig = RouterConfig(), gate: SpanGate, counter: PromptCounter? = nil) {
        self.config = config
        self.gate = gate
        self.counter = counter
    }

    // MARK: - Queries

    /// Replicas of `pool` that take new spans (a draining one does not).
    public func liveReplicas(_ pool: PoolKind) -> Int {
        replicas.values.filter { $0.ready.pool == pool && !$0.draining }.count
    }
    public var activeRequests: Int { requests.count }
    /// The pool a registered replica serves (`.unspecified` for an unknown peer).
    public func pool(of identity: PeerIdentity) -> PoolKind { replicas[identity]?.ready.pool ?? .unspecified }
    public func queueDepth(_ pool: PoolKind) -> Int { queues[pool]?.count ?? 0 }

    /// Every pool's load, for autoscalers (`PoolStatusRequest`).
    public func poolStatus() -> PoolStatus {
        var status = PoolStatus()
        for replica in replicas.values {
            let pool = replica.ready.pool
            status[pool].spansRunning &+= UInt32(replica.inflight.count)
            if replica.draining {
                status[pool].replicasDraining &+= 1
            } else {
                status[pool].replicasReady &+= 1
                status[pool].capacity &+= replica.capacity
            }
        }
        for pool in [PoolKind.emamba, .et5] { status[pool].spansQueued = UInt32(queueDepth(pool)) }
        return status
    }
    public var inflightSpans: Int { inflight.count }

    // MARK: - Inputs

    /// A decoded frame, or nil after counting a malformed one. A peer speaking another protocol
    /// version is told so (`refuse`), so that both sides log the mismatch.
    private func accept(_ decoded: Result<Envelope, WireError>, refuse: (Envelope) -> Void) -> Envelope? {
        switch decoded {
        case .success(let envelope): return envelope
        case .failure(let error):
            stats.malformedFrames += 1
            if case .versionMismatch(let peer) = error { refuse(Envelope.versionRefusal(peer: peer)) }
            return nil
        }
    }

    /// A frame from a gateway on the frontend socket; `peerKey` is the CURVE key its
    /// connection authenticated with ("" without CURVE).
    public func gatewayFrame(_ identity: PeerIdentity, _ decoded: Result<Envelope, WireError>, now: UInt64,
                             peerKey: String = "") -> [RouterAction] {
        var out: [RouterAction] = []
        guard let envelope = accept(decoded, refuse: { out.append(.toGateway(identity, $0)) }) else { return out }
        gateways[identity] = now
        gatewayKeys[identity] = peerKey
        switch envelope.body {
        case .answerRequest(let request):
            admit(request, from: identity, now: now, &out)
        case .cancel(let cancel):
            if let active = requests[cancel.requestId], active.gateway == identity {
                finish(active, now: now, &out, event: nil)
            }
        case .heartbeat:
            break
        case .poolStatusRequest:
            // An autoscaler (a frontend peer, keyed like a gateway) asks how loaded the pools are.
            out.append(.toGateway(identity, Envelope(.poolStatus(poolStatus()))))
        case .disconnect:
            forgetGateway(identity)
            for active in requests.values where active.gateway == identity { finish(active, now: now, &out, event: nil) }
        default:
            stats.malformedFrames += 1
        }
        return out
    }

    /// A frame from an expert on the backend socket; `peerKey` is the CURVE key its
    /// connection authenticated with ("" without CURVE).
    public func expertFrame(_ identity: PeerIdentity, _ decoded: Result<Envelope, WireError>, now: UInt64,
                            peerKey: String = "") -> [RouterAction] {
        var out: [RouterAction] = []
        guard let envelope = accept(decoded, refuse: { out.append(.toExpert(identity, $0)) }) else { return out }
        if case .ready(let ready) = envelope.body {
            guard ready.pool == .emamba || ready.pool == .et5 else {
                stats.malformedFrames += 1
                out.append(.toExpert(identity, Envelope(.disconnect(Disconnect(reason: "Ready names no pool")))))
                return out
            }
            // Ids are kept (bindings, statistics, logs): a peer may not make them large.
            guard ready.replicaId.utf8.count <= RouterStats.maxReplicaIdBytes, ready.modelId.utf8.count <= RouterStats.maxReplicaIdBytes else {
                stats.malformedFrames += 1
                out.append(.toExpert(identity, Envelope(.error(WireErrorBody(
                    code: .badRequest, message: "replica and model ids must be at most \(RouterStats.maxReplicaIdBytes) bytes",
                    retryable: false)))))
                return out
            }
            if let owner = replicaOwners[ready.replicaId], owner != peerKey {
                stats.replicaIdsRefused += 1
                out.append(.toExpert(identity, Envelope(.error(WireErrorBody(
                    code: .unauthorized, message: "replica id \(ready.replicaId) is registered by another key; "
                        + "give this replica its own id (--replica-id or the unit's instance name)", retryable: false)))))
                return out
            }
            if let old = replicas[identity], old.ready.pool != ready.pool {
                removeReplica(identity, died: false, now: now, &out)
            }
            if replicas[identity] == nil {
                guard bind(ready.replicaId, to: peerKey) else {
                    out.append(.toExpert(identity, Envelope(.error(WireErrorBody(
                        code: .overloaded, message: "the router holds \(RouterStats.maxReplicaBindings) replica ids", retryable: true)))))
                    return out
                }
                replicas[identity] = Replica(identity: identity, ready: ready, key: peerKey, now: now)
            }
            replicas[identity]?.lastSeenMs = now
            dispatch(ready.pool, now: now, &out)
            return out
        }
        guard let replica = replicas[identity] else {
            // Majordomo: a worker we do not know (e.g. after a router restart) must re-register.
            if case .disconnect = envelope.body { return out }
            out.append(.toExpert(identity, Envelope(.disconnect(Disconnect(reason: "unknown replica: send Ready")))))
            return out
        }
        replica.lastSeenMs = now
        switch envelope.body {
        case .heartbeat(let heartbeat):
            // 1.3: a draining replica says so at once (scale-down, SIGTERM); it finishes its spans.
            if heartbeat.draining { replica.draining = true }
            // 1.4: its share for this router changed (it serves several routers).
            if heartbeat.capacity > 0 {
                replica.capacity = min(heartbeat.capacity, replica.ready.capacity)
                dispatch(replica.ready.pool, now: now, &out)
            }
        case .disconnect:
            removeReplica(identity, died: false, now: now, &out)
        case .spanResult(let result):
            spanResult(result, from: replica, now: now, &out)
        case .answerEvent(let event):
            // Experts report a failed span as an error event for its request.
            if case .error(let error) = event.kind { spanFailed(requestId: event.requestId, error: error, from: replica, now: now, &out) }
        case .error(let error):
            stats.malformedFrames += 1
            _ = error
        default:
            stats.malformedFrames += 1
        }
        return out
    }

    /// The clock: heartbeats, dead replicas, deadlines.
    public func tick(now: UInt64) -> [RouterAction] {
        var out: [RouterAction] = []
        let deadAfter = config.heartbeatIntervalMs * config.liveness
        for (identity, replica) in replicas where now > replica.lastSeenMs + deadAfter {
            removeReplica(identity, died: true, now: now, &out)
        }
        // A gateway that is gone cannot receive its answers: stop generating them, free their
        // admission slots and the experts' sessions (the gateway has failed them already).
        for (identity, seen) in gateways where now > seen + config.gatewayLivenessMs {
            forgetGateway(identity)
            for active in requests.values where active.gateway == identity {
                stats.orphansCancelled += 1
                finish(active, now: now, &out, event: nil)
            }
        }
        for active in requests.values where now >= active.deadlineMs {
            stats.deadlineMisses += 1
            finish(active, now: now, &out, event: .error(WireErrorBody(
                code: .deadline, message: "deadline passed after \(active.progress.tokens) tokens", retryable: false)))
        }
        if now >= lastHeartbeatMs + config.heartbeatIntervalMs {
            lastHeartbeatMs = now
            for identity in replicas.keys { out.append(.toExpert(identity, Envelope(.heartbeat(Heartbeat())))) }
            let hb = Heartbeat(load: UInt32(requests.count), emambaReplicas: UInt32(liveReplicas(.emamba)),
                               et5Replicas: UInt32(liveReplicas(.et5)))
            for identity in gateways.keys { out.append(.toGateway(identity, Envelope(.heartbeat(hb)))) }
        }
        return out
    }

    /// Stop admitting requests; admitted ones run to completion.
    public func drain() { draining = true }

    /// SIGHUP took keys off the allow-lists. Handshakes with them already fail; this cuts
    /// off what they hold: their replicas leave (spans go elsewhere) and are told why, their
    /// gateways' answers end, and the replica ids they held are free again.
    public func revoke(keepingGatewayKeys gatewayKeys: Set<String>, expertKeys: Set<String>, now: UInt64) -> [RouterAction] {
        var out: [RouterAction] = []
        for (identity, replica) in replicas where !expertKeys.contains(replica.key) {
            stats.peersRevoked += 1
            removeReplica(identity, died: false, now: now, &out)
            out.append(.toExpert(identity, Envelope(.error(WireErrorBody(
                code: .unauthorized, message: "this replica's key was removed from the router's allow-list", retryable: false)))))
        }
        replicaOwners = replicaOwners.filter { expertKeys.contains($0.value) }
        for (identity, key) in self.gatewayKeys where !gatewayKeys.contains(key) {
            stats.peersRevoked += 1
            forgetGateway(identity)
            for active in requests.values where active.gateway == identity {
                finish(active, now: now, &out, event: nil)
            }
        }
        return out
    }

    private func forgetGateway(_ identity: PeerIdentity) {
        gateways[identity] = nil
        gatewayKeys[identity] = nil
    }

    /// Binds a replica id to the key registering it; false when the table is full of ids
    /// registered now.
    private func bind(_ replicaId: String, to key: String) -> Bool {
        if replicaOwners[replicaId] != nil { return true }
        if replicaOwners.count >= RouterStats.maxReplicaBindings {
            let registered = Set(replicas.values.map(\.ready.replicaId))
            replicaOwners = replicaOwners.filter { registered.contains($0.key) }
            guard replicaOwners.count < RouterStats.maxReplicaBindings else { return false }
        }
        replicaOwners[replicaId] = key
        return true
    }

    // MARK: - Requests

    private func admit(_ request: AnswerRequest, from gateway: PeerIdentity, now: UInt64, _ out: inout [RouterAction]) {
        var request = request
        if request.policy.defaultCostWeight {
            request.policy.costWeight = config.defaultCostWeight
            request.policy.defaultCostWeight = false
        }
        func refuse(_ code: ErrorCode, _ message: String, retryable: Bool) {
            out.append(.toGateway(gateway, Envelope(.answerEvent(AnswerEvent(
                requestId: request.requestId, kind: .error(WireErrorBody(code: code, message: message, retryable: retryable)))))))
        }
        stats.requests += 1
        guard !request.requestId.isEmpty, request.requestId.utf8.count <= 128 else {
            return refuse(.badRequest, "request_id must be 1-128 bytes", retryable: false)
        }
        guard requests[request.requestId] == nil else {
            return refuse(.badRequest, "request \(request.requestId) is already in progress", retryable: false)
        }
        guard !request.question.isEmpty else { return refuse(.badRequest, "empty question", retryable: false) }
        guard request.maxNewTokens >= 1, request.maxNewTokens <= config.maxNewTokensLimit else {
            return refuse(.badRequest, "max_new_tokens must be in 1...\(config.maxNewTokensLimit)", retryable: false)
        }
        guard !draining else {
            stats.requestsFailed += 1
            return refuse(.unavailable, "router is shutting down", retryable: true)
        }
        // The cheap refusal before the dear one: under a flood, tokenizing requests that
        // would be refused anyway is wasted time on this thread.
        guard requests.count < config.maxActiveRequests else {
            stats.overloaded += 1
            return refuse(.overloaded, "router has \(requests.count) requests in progress", retryable: true)
        }
        let prompt = request.canonicalPrompt
        if let problem = promptProblem(prompt) {
            stats.promptsTooLong += problem.reason == WireErrorBody.Reason.promptTooLong ? 1 : 0
            stats.requestsFailed += 1
            out.append(.toGateway(gateway, Envelope(.answerEvent(AnswerEvent(requestId: request.requestId, kind: .error(problem))))))
            return
        }
        let deadline = Deadline.instant(timeLeft: request.deadlineMs > 0 ? UInt64(request.deadlineMs) : config.defaultDeadlineMs,
                                        nowMs: now)
        let active = ActiveRequest(request: request, gateway: gateway, prompt: prompt,
                                   deadlineMs: deadline, now: now)
        if let resume = request.resume {
            // Another router started this answer and died; its gateway hands over the answer
            // so far. A forged one is refused like any malformed request.
            if let problem = resume.problem(of: request, maxTextBytes: config.maxPromptBytes) {
                stats.requestsFailed += 1
                return refuse(.badRequest, "cannot resume the answer: \(problem)", retryable: false)
            }
            active.progress = resume
            stats.resumed += 1
        }
        // Admission: the first span must find a pool with room, or the request is refused now.
        guard let pool = choosePool(for: active, admission: true, &out) else { return }
        requests[request.requestId] = active
        enqueueSpan(active, pool: pool, now: now)
        dispatch(pool, now: now, &out)
    }

    /// Why `prompt` cannot be admitted (over a limit, naming the count and the limit, or not
    /// encodable), nil when it fits. Bytes first: they bound the tokenizers' work on this thread.
    private func promptProblem(_ prompt: String) -> WireErrorBody? {
        func tooLong(_ what: String) -> WireErrorBody {
            WireErrorBody(code: .badRequest, message: "the prompt (question + context) is \(what)", retryable: false,
                          reason: WireErrorBody.Reason.promptTooLong)
        }
        let bytes = prompt.utf8.count
        if bytes > config.maxPromptBytes { return tooLong("\(bytes) bytes; the limit is \(config.maxPromptBytes)") }
        guard let counter else { return nil }
        for pool in [PoolKind.emamba, .et5] {
            do {
                let tokens = try counter.promptTokens(prompt, pool: pool)
                if tokens > config.maxPromptTokens { return tooLong("\(tokens) \(pool) tokens; the limit is \(config.maxPromptTokens)") }
            } catch {
                return WireErrorBody(code: .badRequest, message: "the \(pool) tokenizer cannot encode the prompt: \(error)",
                                     retryable: false)
            }
        }
        return nil
    }

    /// Runs the gate and applies policy, availability and backpressure. Returns nil after
    /// answering the request with an error.
    private func choosePool(for active: ActiveRequest, admission: Bool, _ out: inout [RouterAction]) -> PoolKind? {
        let request = active.request
        let decision = gate.decide(GateInput(
            question: request.question, context: request.context, answerSoFar: active.progress.text,
            previous: active.progress.previousPool, previousConfidence: active.progress.previousConfidence,
            previousEntropy: active.progress.previousEntropy, policy: request.policy))
        active.spanScore = decision.score
        var pool = request.policy.forced == .unspecified ? decision.pool : request.policy.forced
        func fail(_ code: ErrorCode, _ message: String) -> PoolKind? {
            if code == .overloaded { stats.overloaded += 1 }
            let event = AnswerEvent(requestId: request.requestId, kind: .error(WireErrorBody(code: code, message: message, retryable: true)))
            if requests[request.requestId] != nil { finish(active, now: 0, &out, event: .error(WireErrorBody(code: code, message: message, retryable: true))) }
            else { stats.requestsFailed += 1; out.append(.toGateway(active.gateway, Envelope(.answerEvent(event)))) }
            return nil
        }
        if liveReplicas(pool) == 0 {
            guard liveReplicas(pool.other) > 0 else { return fail(.unavailable, "no expert replicas are connected") }
            stats.fallbacks += 1
            pool = pool.other
        }
        if admission, queueDepth(pool) >= config.maxQueuedSpansPerPool {
            let other = pool.other
            if config.fallbackOnOverload, request.policy.forced == .unspecified,
               liveReplicas(other) > 0, queueDepth(other) < config.maxQueuedSpansPerPool {
                stats.fallbacks += 1
                pool = other
            } else {
                return fail(.overloaded, "the \(pool) pool is saturated (\(queueDepth(pool)) spans queued)")
            }
        }
        return pool
    }

    private func enqueueSpan(_ active: ActiveRequest, pool: PoolKind, now: UInt64) {
        var spanTokens = active.request.spanTokens > 0 ? active.request.spanTokens : config.spanTokens
        if active.progress.spans == 0, config.firstSpanTokens > 0 { spanTokens = min(spanTokens, config.firstSpanTokens) }
        let span = active.progress.nextSpan(of: active.request, prompt: active.prompt, spanTokens: spanTokens)
        active.span = span
        active.spanPool = pool
        active.spanQueuedMs = now
        active.spanAttempts = 0
        active.spanReplicaDeaths = 0
        queues[pool, default: []].append(SpanKey(requestId: span.requestId, spanIndex: span.spanIndex))
    }

    /// Sends queued spans of `pool` to replicas with room: the replica that served the
    /// sequence before (its session cache is warm) if it has room, else the least loaded.
    private func dispatch(_ pool: PoolKind, now: UInt64, _ out: inout [RouterAction]) {
        var queue = queues[pool] ?? []
        defer { queues[pool] = queue }
        while !queue.isEmpty {
            let key = queue[0]
            guard let active = requests[key.requestId], let span = active.span, span.spanIndex == key.spanIndex,
                  inflight[key] == nil else {
                queue.removeFirst()  // cancelled, finished or already re-queued
                continue
            }
            let candidates = replicas.values.filter { $0.ready.pool == pool && $0.hasRoom }
            guard !candidates.isEmpty else { return }
            let replica: Replica
            if let preferred = active.affinity[pool], let r = replicas[preferred], r.ready.pool == pool, r.hasRoom {
                replica = r
            } else {
                replica = candidates.min { ($0.inflight.count, $0.ready.replicaId) < ($1.inflight.count, $1.ready.replicaId) }!
            }
            queue.removeFirst()
            replica.inflight.insert(key)
            inflight[key] = Inflight(replica: replica.identity, pool: pool, dispatchedMs: now)
            active.spanAttempts += 1
            active.queueUs += (now - min(now, active.spanQueuedMs)) * 1000
            stats.spansDispatched += 1
            // The time left is stamped as the span leaves: it may have waited in the queue.
            var sent = span
            sent.deadlineMs = UInt32(clamping: Deadline.timeLeft(until: active.deadlineMs, nowMs: now))
            out.append(.toExpert(replica.identity, Envelope(.spanRequest(sent))))
        }
    }

    private func spanResult(_ result: SpanResult, from replica: Replica, now: UInt64, _ out: inout [RouterAction]) {
        let key = SpanKey(requestId: result.requestId, spanIndex: result.spanIndex)
        guard let flight = inflight[key], flight.replica == replica.identity else {
            stats.lateResults += 1  // a duplicate, or from a replica we already gave up on
            return
        }
        inflight[key] = nil
        replica.inflight.remove(key)
        defer { dispatch(flight.pool, now: now, &out) }
        guard let active = requests[result.requestId] else { return }

        var forwarded = result
        forwarded.pool = flight.pool
        forwarded.replicaId = replica.ready.replicaId
        forwarded.gateScore = active.spanScore
        forwarded.queueUs = (flight.dispatchedMs - min(flight.dispatchedMs, active.spanQueuedMs)) * 1000
        let tokens = UInt32(result.pieces.count)
        active.progress.append(result, pool: flight.pool)
        active.affinity[flight.pool] = replica.identity
        active.span = nil
        stats.tokens[flight.pool, default: 0] += Int(tokens)
        stats.spans[flight.pool, default: 0] += 1
        // Keyed by a name the peer chose: bounded, so replicas that come and go (pid-based
        // names) cannot grow it forever.
        let statsKey = stats.spansByReplica[replica.ready.replicaId] != nil || stats.spansByReplica.count < RouterStats.maxReplicaKeys
            ? replica.ready.replicaId : "other"
        stats.spansByReplica[statsKey, default: 0] += 1
        out.append(.toGateway(active.gateway, Envelope(.answerEvent(AnswerEvent(requestId: active.request.requestId, kind: .span(forwarded))))))

        switch result.finish {
        case .eos: return complete(active, .eos, now: now, &out)
        case .deadline: return complete(active, .deadline, now: now, &out)
        case .cancelled: return finish(active, now: now, &out, event: nil)
        case .length, .none: break
        }
        if active.progress.tokens >= active.request.maxNewTokens { return complete(active, .length, now: now, &out) }
        if tokens == 0 {
            return finish(active, now: now, &out, event: .error(WireErrorBody(
                code: .internalError, message: "expert \(replica.ready.replicaId) returned an empty span", retryable: true)))
        }
        guard let pool = choosePool(for: active, admission: false, &out) else { return }
        enqueueSpan(active, pool: pool, now: now)
        dispatch(pool, now: now, &out)
    }

    private func spanFailed(requestId: String, error: WireErrorBody, from replica: Replica, now: UInt64, _ out: inout [RouterAction]) {
        guard let active = requests[requestId], let span = active.span else { return }
        let key = SpanKey(requestId: requestId, spanIndex: span.spanIndex)
        guard let flight = inflight[key], flight.replica == replica.identity else { return }
        inflight[key] = nil
        replica.inflight.remove(key)
        if error.code == .unavailable { replica.draining = true }
        if error.retryable, active.spanAttempts < config.maxAttemptsPerSpan {
            requeue(active, key: key, now: now, &out)
        } else {
            finish(active, now: now, &out, event: .error(error))
        }
        dispatch(flight.pool, now: now, &out)
    }

    /// A replica is gone (`died`: silent past its liveness; else it disconnected or changed pool):
    /// its spans go back to the front of a queue, unless the poison-span rule stops them.
    private func removeReplica(_ identity: PeerIdentity, died: Bool, now: UInt64, _ out: inout [RouterAction]) {
        guard let replica = replicas.removeValue(forKey: identity) else { return }
        for key in replica.inflight {
            inflight[key] = nil
            guard let active = requests[key.requestId] else { continue }
            if died { active.spanReplicaDeaths += 1 }
            if active.spanReplicaDeaths >= config.maxReplicaDeathsPerSpan {
                stats.poisonSpans += 1
                finish(active, now: now, &out, event: .error(WireErrorBody(
                    code: .internalError,
                    message: "span \(key.spanIndex) was running on \(active.spanReplicaDeaths) replicas that died or fell silent; "
                        + "it is not retried again, so that one request cannot take down every replica in turn",
                    retryable: false)))
            } else if active.spanAttempts >= config.maxAttemptsPerSpan {
                finish(active, now: now, &out, event: .error(WireErrorBody(
                    code: .unavailable, message: "span \(key.spanIndex) failed on \(active.spanAttempts) replicas", retryable: true)))
            } else {
                requeue(active, key: key, now: now, &out)
            }
        }
        // Spans queued for a pool that just became empty move to the other pool.
        for pool in [PoolKind.emamba, .et5] where liveReplicas(pool) == 0 {
            let stranded = queues[pool] ?? []
            queues[pool] = []
            for key in stranded {
                guard let active = requests[key.requestId], active.span?.spanIndex == key.spanIndex else { continue }
                if liveReplicas(pool.other) > 0 {
                    stats.fallbacks += 1
                    active.spanPool = pool.other
                    queues[pool.other, default: []].append(key)
                } else {
                    finish(active, now: now, &out, event: .error(WireErrorBody(
                        code: .unavailable, message: "no expert replicas are connected", retryable: true)))
                }
            }
        }
        for pool in [PoolKind.emamba, .et5] { dispatch(pool, now: now, &out) }
    }

    private func requeue(_ active: ActiveRequest, key: SpanKey, now: UInt64, _ out: inout [RouterAction]) {
        stats.spanRetries += 1
        active.retries += 1
        var pool = active.spanPool
        if liveReplicas(pool) == 0, liveReplicas(pool.other) > 0 {
            stats.fallbacks += 1
            pool = pool.other
            active.spanPool = pool
        }
        active.spanQueuedMs = now
        queues[pool, default: []].insert(key, at: 0)
    }

    private func complete(_ active: ActiveRequest, _ finishReason: FinishReason, now: UInt64, _ out: inout [RouterAction]) {
        let stats = DoneStats(
            finish: finishReason, spans: active.progress.spans, promptTokens: active.progress.promptTokens,
            completionTokens: active.progress.tokens,
            emambaTokens: active.progress.tokensByPool[.emamba] ?? 0, et5Tokens: active.progress.tokensByPool[.et5] ?? 0,
            totalUs: (now - min(now, active.startedMs)) * 1000, queueUs: active.queueUs,
            retries: active.retries, gateKind: gate.kind)
        self.stats.requestsDone += 1
        finish(active, now: now, &out, event: .done(stats))
    }

    /// Removes a request; tells the expert working on it to stop and the replicas that keep
    /// its session (KV cache, SSM state) to release it; sends `event` to its gateway.
    private func finish(_ active: ActiveRequest, now: UInt64, _ out: inout [RouterAction], event: AnswerEvent.Kind?) {
        let id = active.request.requestId
        guard requests.removeValue(forKey: id) != nil else { return }
        var told = Set<PeerIdentity>()
        if let span = active.span {
            let key = SpanKey(requestId: id, spanIndex: span.spanIndex)
            if let flight = inflight.removeValue(forKey: key) {
                replicas[flight.replica]?.inflight.remove(key)
                out.append(.toExpert(flight.replica, Envelope(.cancel(Cancel(requestId: id)))))
                told.insert(flight.replica)
                dispatch(flight.pool, now: now, &out)
            }
        }
        // Without this a finished answer's sessions would sit in the experts' LRU caches
        // until evicted: memory grows with traffic up to the cache bound.
        for replica in Set(active.affinity.values) where !told.contains(replica) && replicas[replica] != nil {
            out.append(.toExpert(replica, Envelope(.cancel(Cancel(requestId: id)))))
        }
        if let event {
            if case .error = event { stats.requestsFailed += 1 }
            out.append(.toGateway(active.gateway, Envelope(.answerEvent(AnswerEvent(requestId: id, kind: event)))))
        }
    }
}

import Foundation  // exp
