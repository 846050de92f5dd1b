import Foundation
import Gateway
import Wire

/// An in-process stand-in for the router: for each request it plays a script of span results,
/// pauses, and a final done/error, and records what the gateway asked (requests, cancels).
final class FakeBackend: AnswerBackend, @unchecked Sendable {
    enum Action: Sendable {
        case span(UInt32, String, PoolKind = .emamba, tokens: Int = 2)
        case sleep(Int)
        case done(DoneStats = DoneStats(finish: .eos))
        case error(ErrorCode, String = "scripted")
        /// Stop emitting and never finish (the router went quiet).
        case hang
        /// The connection to this router dropped (what `RouterClient` reports): the answer may move.
        case lost
    }

    private let lock = NSLock()
    private var _submitted: [AnswerRequest] = []
    private var _cancelled: [String] = []
    private var running: [String: Task<Void, Never>] = [:]
    var statusValue = BackendStatus(routerReachable: true, emambaReplicas: 2, et5Replicas: 1)
    /// Thrown by submit when set (e.g. router unreachable / overloaded).
    var submitError: Error?
    let script: @Sendable (AnswerRequest) -> [Action]

    init(script: @escaping @Sendable (AnswerRequest) -> [Action]) { self.script = script }

    /// Spans "The ", "answer ", "is 42." then done.
    static func simple(delayMs: Int = 0) -> FakeBackend {
        FakeBackend { _ in
            [.span(0, "The ", .emamba), .sleep(delayMs), .span(1, "answer ", .et5, tokens: 3), .sleep(delayMs),
             .span(2, "is 42.", .emamba), .done(DoneStats(finish: .eos, spans: 3, promptTokens: 7, completionTokens: 7,
                                                           emambaTokens: 4, et5Tokens: 3, queueUs: 1500))]
        }
    }

    var submitted: [AnswerRequest] { lock.withLock { _submitted } }
    var cancelled: [String] { lock.withLock { _cancelled } }

    func submit(_ request: AnswerRequest, to sink: AnswerSink) async throws {
        if let submitError { throw submitError }
        lock.withLock { _submitted.append(request) }
        let actions = script(request)
        let id = request.requestId
        let task = Task {
            for action in actions {
                if Task.isCancelled { break }
                switch action {
                case .span(let index, let text, let pool, let tokens):
                    // The first token carries the span's text; each has a log-probability, and
                    // the alternatives a request asked for.
                    let pieces = (0..<tokens).map { i in
                        Piece(text: i == 0 ? text : "", tokenId: UInt32(i), logprob: -0.25 * Float(i + 1), entropy: 1,
                              top: (0..<Int(request.topLogprobs)).map { k in
                                  TokenLogprob(tokenId: UInt32(100 + k), text: "alt\(k)", logprob: -1 - Float(k))
                              })
                    }
                    sink.send(AnswerEvent(requestId: id, kind: .span(SpanResult(
                        requestId: id, spanIndex: index, pieces: pieces, text: text, computeUs: 1234,
                        promptTokens: 7, replicaId: "\(pool)-0", pool: pool, gateScore: pool == .et5 ? 0.8 : 0.1))))
                case .sleep(let ms):
                    if ms > 0 { try? await Task.sleep(for: .milliseconds(ms)) }
                case .done(let stats):
                    sink.send(AnswerEvent(requestId: id, kind: .done(stats)))
                    sink.end()
                    return
                case .error(let code, let message):
                    sink.send(AnswerEvent(requestId: id, kind: .error(
                        WireErrorBody(code: code, message: message, retryable: code == .overloaded))))
                    sink.end()
                    return
                case .hang:
                    while !Task.isCancelled { try? await Task.sleep(for: .milliseconds(20)) }
                case .lost:
                    self.lock.withLock { self.statusValue.routerReachable = false }
                    sink.send(AnswerEvent(requestId: id, kind: .error(WireErrorBody(
                        code: .unavailable, message: "the connection to the router dropped", retryable: true,
                        reason: WireErrorBody.Reason.routerLost))))
                    sink.end()
                    return
                }
            }
            sink.end()
        }
        lock.withLock { running[id] = task }
    }

    func cancel(requestId: String) async {
        let task = lock.withLock { () -> Task<Void, Never>? in
            _cancelled.append(requestId)
            return running[requestId]
        }
        task?.cancel()
    }

    func status() async -> BackendStatus { lock.withLock { statusValue } }

    func setStatus(_ s: BackendStatus) { lock.withLock { statusValue = s } }

    /// Waits (bounded) until a request was cancelled.
    func waitForCancel(_ id: String? = nil, timeout: Duration = .seconds(5)) async -> Bool {
        let end = ContinuousClock.now + timeout
        while ContinuousClock.now < end {
            let c = cancelled
            if let id { if c.contains(id) { return true } } else if !c.isEmpty { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }
}
