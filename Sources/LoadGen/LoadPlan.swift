import Foundation
import Random

/// What a run sends, how fast and for how long. Construct it, adjust the fields, hand it to
/// `LoadRunner`. `validate()` (called by the runner) checks it, including the loopback guard.
public struct LoadPlan: Sendable {
    public enum Mode: Sendable, Equatable {
        /// N clients, each sending its next request as soon as the previous one ends.
        case closed(concurrency: Int)
        /// Poisson arrivals following a schedule, independent of the responses. At most
        /// `maxInFlight` requests are outstanding; an arrival over that waits for a slot, and
        /// its latency still counts from its scheduled time.
        case open(schedule: RateSchedule, maxInFlight: Int)

        var name: String {
            if case .closed = self { return "closed" } else { return "open" }
        }
        var concurrency: Int? {
            if case .closed(let n) = self { return n } else { return nil }
        }
        var schedule: RateSchedule? {
            if case .open(let s, _) = self { return s } else { return nil }
        }
    }

    /// Which HTTP API the requests speak.
    public enum API: String, Sendable, Equatable, CaseIterable {
        /// Our own `POST /v1/answer` (routing trace and time to first span included).
        case native
        /// `POST /v1/chat/completions` of any OpenAI-compatible server (ours, llama.cpp's
        /// llama-server, vLLM, TGI): how users compare one server with another.
        case openai
    }

    /// Gateway base URL, e.g. http://127.0.0.1:8080.
    public var target: URL
    public var mode: Mode
    public var api: API = .native
    /// OpenAI API: the `model` field (nil: the first model of the server's `GET /v1/models`).
    public var model: String?
    /// OpenAI API: ask the server to ignore end-of-sequence (`"ignore_eos": true`, a vLLM and
    /// llama.cpp extension that OpenAI itself lacks), so every answer is `max_tokens` long and
    /// servers are compared on equal work. Servers without it ignore the field.
    public var ignoreEOS = false
    /// Stop issuing after this many requests (nil: no count bound).
    public var maxRequests: Int?
    /// Stop issuing after this many seconds (nil: no time bound). In-flight requests finish.
    public var durationSeconds: Double?
    /// Share of prompts drawn from the long (with context) ones; nil keeps the file's mix.
    public var longShare: Double?
    public var maxTokens: ValueRange = ValueRange(16)
    /// nil leaves the gateway's default policy.
    public var costWeight: ValueRange?
    /// Force an expert ("emamba", "et5", "auto"); nil leaves it to the gate.
    public var expert: String?
    public var stream = false
    public var seed: UInt64 = 1
    /// Per request, from its send to the end of its response.
    public var timeoutSeconds: Double = 60
    public var bearerToken: String?
    public var allowRemote = false

    public init(target: URL, mode: Mode) {
        self.target = target
        self.mode = mode
    }

    public func validate() throws {
        try TargetCheck.check(target, allowRemote: allowRemote)
        switch mode {
        case .closed(let n):
            guard n >= 1 else { throw LoadGenError.invalidOption(option: "--concurrency", value: "\(n)", reason: "must be at least 1") }
        case .open(let schedule, let maxInFlight):
            guard schedule.peakRate > 0, schedule.peakRate.isFinite else {
                throw LoadGenError.invalidOption(option: "--rate", value: "\(schedule)", reason: "must be positive")
            }
            guard maxInFlight >= 1 else {
                throw LoadGenError.invalidOption(option: "--max-inflight", value: "\(maxInFlight)", reason: "must be at least 1")
            }
        }
        guard maxRequests != nil || durationSeconds != nil else {
            throw LoadGenError.invalidOption(option: "--requests/--duration", value: "none",
                                             reason: "give a request count, a duration, or both")
        }
        if let n = maxRequests, n < 1 {
            throw LoadGenError.invalidOption(option: "--requests", value: "\(n)", reason: "must be at least 1")
        }
        if let d = durationSeconds, !(d > 0 && d.isFinite) {
            throw LoadGenError.invalidOption(option: "--duration", value: "\(d)", reason: "must be positive")
        }
        if let share = longShare, !(0...1).contains(share) {
            throw LoadGenError.invalidOption(option: "--long-share", value: "\(share)", reason: "must lie within 0...1")
        }
        guard timeoutSeconds > 0, timeoutSeconds.isFinite else {
            throw LoadGenError.invalidOption(option: "--timeout", value: "\(timeoutSeconds)", reason: "must be positive")
        }
        if maxTokens.low < 1 {
            throw LoadGenError.invalidOption(option: "--max-tokens", value: "\(maxTokens)", reason: "must be at least 1")
        }
        if let cw = costWeight, cw.low < 0 || cw.high > 1 {
            throw LoadGenError.invalidOption(option: "--cost-weight", value: "\(cw)", reason: "must lie within 0...1")
        }
        if ignoreEOS && api != .openai {
            throw LoadGenError.invalidOption(option: "--ignore-eos", value: "true",
                                             reason: "only with --api openai (our /v1/answer has no such field; start the experts with --ignore-eos)")
        }
        if let expert, !["emamba", "et5", "auto"].contains(expert) {
            throw LoadGenError.invalidOption(option: "--expert", value: expert, reason: "must be emamba, et5 or auto")
        }
    }

    /// The body of request `index`: a pure function of the seed and the index, so runs with
    /// the same seed send the same prompts whatever order the clients claim them in.
    public func body(_ index: Int, from workload: Workload) -> AnswerBody {
        var rng = SplitMix64.stream(seed: seed, index: index, salt: 0xB0D1)
        let prompt = workload.pick(longShare: longShare, using: &rng)
        let tokens = maxTokens.sampleInt(using: &rng)
        let weight = costWeight.map { ($0.sample(using: &rng) * 1000).rounded() / 1000 }
        return AnswerBody(question: prompt.question, context: prompt.context, maxTokens: tokens,
                          costWeight: weight, expert: expert, stream: stream)
    }
}
