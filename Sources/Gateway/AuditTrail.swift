import Audit
import Foundation
import GatewayClient
import Logging
import Wire

/// The gateway's side of the audit trail (`audit.path`): one sealed JSON line per API request
/// (not the probes or `/metrics`), written before the answer's last byte goes out.
///
/// A line holds who (client name and address), what (endpoint, status, error code), how much
/// (prompt and completion tokens, latency), which experts served it (each span's expert and
/// replica), and keyed hashes of the prompt and the answer, never their text unless
/// `security.allow_audit_text`. When the log cannot be written, new requests get
/// `503 audit_unavailable` and an answer whose line failed is withheld, unless
/// `security.allow_unaudited_answers`.
public final class GatewayAudit: Sendable {
    let log: AuditLog
    let key: AuditKey
    let includeText: Bool
    let allowUnaudited: Bool
    let metrics: GatewayMetrics?

    public init(log: AuditLog, key: AuditKey, includeText: Bool = false, allowUnaudited: Bool = false,
                metrics: GatewayMetrics? = nil) {
        self.log = log; self.key = key; self.includeText = includeText; self.allowUnaudited = allowUnaudited
        self.metrics = metrics
    }

    /// New requests must be refused: the log is failed and unaudited answers are not allowed.
    var refusesRequests: Bool { !allowUnaudited && !log.isHealthy }

    /// Writes the request's line (once). False when it could not be written and answers must
    /// then be withheld.
    func seal(_ note: AuditNote, status: Int, error: String?) async -> Bool {
        switch note.take(status: status, error: error, audit: self) {
        case .alreadySealed:
            return true
        case .unencodable:
            metrics?.auditLine(written: false)
            return allowUnaudited
        case .fields(let fields):
            let written = await log.append(fields)
            metrics?.auditLine(written: written)
            return written || allowUnaudited
        }
    }

    struct Record: Encodable {
        struct Span: Encodable { let span: Int; let expert: String; let replica: String; let tokens: Int }
        let time: String
        let requestId: String
        let client: String?
        let address: String
        let method: String
        let endpoint: String
        let status: Int
        let error: String?
        let finishReason: String?
        let promptTokens: Int
        let completionTokens: Int
        let spans: [Span]
        let latencyMs: Double
        let promptHmac: String?
        let answerHmac: String?
        let prompt: String?
        let answer: String?

        enum CodingKeys: String, CodingKey {
            case time, requestId = "request_id", client, address, method, endpoint, status, error
            case finishReason = "finish_reason", promptTokens = "prompt_tokens", completionTokens = "completion_tokens"
            case spans, latencyMs = "latency_ms", promptHmac = "prompt_hmac", answerHmac = "answer_hmac", prompt, answer
        }

        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(time, forKey: .time); try c.encode(requestId, forKey: .requestId)
            try c.encode(client, forKey: .client); try c.encode(address, forKey: .address)
            try c.encode(method, forKey: .method); try c.encode(endpoint, forKey: .endpoint)
            try c.encode(status, forKey: .status); try c.encode(error, forKey: .error)
            try c.encode(finishReason, forKey: .finishReason)
            try c.encode(promptTokens, forKey: .promptTokens); try c.encode(completionTokens, forKey: .completionTokens)
            try c.encode(spans, forKey: .spans); try c.encode(latencyMs, forKey: .latencyMs)
            try c.encode(promptHmac, forKey: .promptHmac); try c.encode(answerHmac, forKey: .answerHmac)
            try c.encodeIfPresent(prompt, forKey: .prompt); try c.encodeIfPresent(answer, forKey: .answer)
        }
    }
}

/// What one request's audit line will say, filled as the request goes: the door sets who and
/// where, the endpoint adds the prompt and the answer. Shared through the request context
/// (the context is copied on the way in).
final class AuditNote: @unchecked Sendable {
    private let lock = NSLock()
    private var sealed = false
    private var recorder: GatewayAudit?
    private var requestId = ""
    private var client: String?
    private var address = ""
    private var method = ""
    private var endpoint = ""
    private var received = Date()
    private var started = ContinuousClock.now
    private var prompt: String?
    private var answer: AnswerResponse?
    /// What a stream has sent so far: a client that hangs up mid-answer has still been shown it.
    private var streamedText = ""
    private var streamedSpans: [AnswerResponse.TraceEntry] = []
    /// Set by a streaming endpoint, which seals the line itself before its last event.
    private(set) var streaming: Bool {
        get { lock.withLock { _streaming } }
        set { lock.withLock { _streaming = newValue } }
    }
    private var _streaming = false

    var audit: GatewayAudit? { lock.withLock { recorder } }
    var isSealed: Bool { lock.withLock { sealed } }

    func begin(_ recorder: GatewayAudit, requestId: String, address: String, method: String, endpoint: String) {
        lock.withLock {
            self.recorder = recorder; self.requestId = requestId; self.address = address
            self.method = method; self.endpoint = endpoint; received = Date(); started = .now
        }
    }

    func authenticated(as client: String?) { lock.withLock { self.client = client } }

    /// The prompt as the models see it: question and context, separated by a NUL byte.
    /// Without an audit log (no `begin`) nothing is kept: no copies on the answer path.
    func prompt(question: String, context: String) {
        lock.withLock { if recorder != nil { prompt = question + "\u{0}" + context } }
    }

    func answered(_ response: AnswerResponse?) { if let response { lock.withLock { if recorder != nil { answer = response } } } }

    /// A span a stream sent (and text it released at the end).
    func streamed(_ span: SpanResult) {
        lock.withLock {
            guard recorder != nil else { return }
            streamedText += span.text
            streamedSpans.append(AnswerResponse.TraceEntry(span))
        }
    }
    func streamed(text: String) { lock.withLock { if recorder != nil { streamedText += text } } }

    func streams() { streaming = true }

    /// No line for this request (refused because the log is down, or an address the failed-token
    /// throttle already blocks: counted in metrics and the access log instead).
    func discard() { lock.withLock { sealed = true } }

    enum Take { case alreadySealed, unencodable, fields(String) }

    /// The line's fields (JSON without braces), once.
    fileprivate func take(status: Int, error: String?, audit: GatewayAudit) -> Take {
        let record: GatewayAudit.Record? = lock.withLock {
            guard !sealed, recorder != nil else { return nil }
            sealed = true
            // The final answer when there is one, else what a stream had sent before it ended.
            let answerText = answer?.answer ?? (streamedSpans.isEmpty && streamedText.isEmpty ? nil : streamedText)
            let trace = answer?.trace ?? streamedSpans
            return GatewayAudit.Record(
                time: AuditLog.timestamp(received), requestId: requestId, client: client, address: address,
                method: method, endpoint: endpoint, status: status, error: error, finishReason: answer?.finishReason,
                promptTokens: answer?.usage.promptTokens ?? 0,
                completionTokens: answer?.usage.completionTokens ?? trace.reduce(0) { $0 + $1.tokens },
                spans: trace.map { .init(span: $0.span, expert: $0.expert, replica: $0.replica, tokens: $0.tokens) },
                latencyMs: Double((ContinuousClock.now - started) / .microseconds(1)) / 1000,
                promptHmac: prompt.map(audit.key.hash), answerHmac: answerText.map(audit.key.hash),
                prompt: audit.includeText ? prompt : nil, answer: audit.includeText ? answerText : nil)
        }
        guard let record else { return .alreadySealed }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        // Fail closed: a line that cannot be encoded is a line not written.
        guard let data = try? encoder.encode(record), data.count >= 2 else { return .unencodable }
        return .fields(String(decoding: data.dropFirst().dropLast(), as: UTF8.self))
    }
}
