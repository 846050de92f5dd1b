import GatewayClient
import HTTPTypes
import Wire

/// Every failure the gateway reports to a client: an HTTP status, a stable machine-readable
/// `code`, and a message saying what to fix. Rendered as
/// `{"error": {"code", "message", "request_id", "type"[, "partial"]}}` by `ErrorMiddleware`
/// (and as an `error` event once a stream has started).
public struct GatewayError: Error, CustomStringConvertible, Sendable {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    /// Seconds for `Retry-After` (429, 503).
    public var retryAfter: Int?
    /// The `Allow` header of a 405: the method the path takes.
    public var allow: String?
    /// What was generated before a deadline or an unrecoverable gap (504, 502).
    public var partial: AnswerResponse?
    /// Set once the request's connection is being watched for a client hang-up (see
    /// `Endpoints.collect`): Hummingbird then closes the connection after the response, so the
    /// response says `Connection: close` and clients do not try to reuse it.
    var closesConnection = false

    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String,
                retryAfter: Int? = nil, partial: AnswerResponse? = nil) {
        self.status = status; self.code = code; self.message = message
        self.retryAfter = retryAfter; self.partial = partial
    }

    public var description: String { "\(status.code) \(code): \(message)" }

    /// OpenAI-style error class, so OpenAI client libraries raise the matching exception.
    public var type: String {
        switch status.code {
        case 401: return "authentication_error"
        case 429: return "rate_limit_error"
        case 504: return "timeout_error"
        case 400..<500: return "invalid_request_error"
        default: return "server_error"
        }
    }

    // MARK: The catalogue (one place, so openapi.yaml can list them)

    static func invalidJSON(_ detail: String) -> GatewayError {
        .init(.badRequest, "invalid_json", "request body is not valid JSON: \(detail)")
    }
    static let invalidUTF8 = GatewayError(.badRequest, "invalid_utf8", "request body is not valid UTF-8")
    static func invalidType(_ field: String, expected: String, got: String) -> GatewayError {
        .init(.unprocessableContent, "invalid_type", "field `\(field)` must be \(expected), got \(got)")
    }
    static func missingField(_ field: String) -> GatewayError {
        .init(.unprocessableContent, "missing_field", "field `\(field)` is required")
    }
    static func unknownField(_ field: String, allowed: [String]) -> GatewayError {
        .init(.unprocessableContent, "unknown_field",
              "unknown field `\(field)` (accepted: \(allowed.joined(separator: ", ")))")
    }
    static func invalidValue(_ field: String, _ why: String) -> GatewayError {
        .init(.unprocessableContent, "invalid_value", "field `\(field)` \(why)")
    }
    static func unsupported(_ field: String, _ why: String) -> GatewayError {
        .init(.unprocessableContent, "unsupported", "field `\(field)`: \(why)")
    }
    static let emptyQuestion = GatewayError(.unprocessableContent, "empty_question", "the question is empty")
    /// `unit`: "bytes" (the gateway's check) or "emamba tokens" / "et5 tokens" (the router's).
    static func promptTooLong(_ count: Int, _ unit: String, limit: Int) -> GatewayError {
        .init(.unprocessableContent, "prompt_too_long",
              "the prompt (question + context) is \(count) \(unit); the limit is \(limit)")
    }
    static func maxTokensTooLarge(_ asked: Int, limit: Int) -> GatewayError {
        .init(.unprocessableContent, "max_tokens_too_large", "max_tokens \(asked) exceeds the limit of \(limit)")
    }
    static func bodyTooLarge(limit: Int) -> GatewayError {
        .init(.contentTooLarge, "body_too_large", "request body exceeds \(limit) bytes")
    }
    static func requestTimeout(ms: Int) -> GatewayError {
        .init(.requestTimeout, "request_timeout",
              "the request (head and body) did not arrive within \(ms) ms; the connection is closed")
    }
    static func methodNotAllowed(path: String, allowed: HTTPRequest.Method) -> GatewayError {
        var e = GatewayError(.methodNotAllowed, "method_not_allowed", "\(path) takes \(allowed.rawValue) only")
        e.allow = allowed.rawValue
        return e
    }
    static let unauthorized = GatewayError(.unauthorized, "unauthorized",
                                           "missing or invalid bearer token (Authorization: Bearer <token>)")
    static func certificateNameInvalid(_ name: String) -> GatewayError {
        .init(.unauthorized, "unauthorized", "the client certificate's subject CN \(JSON.encode(name)) is not a client name "
              + "(1-64 of A-Z a-z 0-9 . _ -); ask for a certificate whose CN is the application's name")
    }
    static func authThrottled(retryAfter: Int) -> GatewayError {
        .init(.tooManyRequests, "auth_throttled",
              "too many failed token checks from this address; retry after \(retryAfter) s with a valid token",
              retryAfter: retryAfter)
    }
    static func overloaded(limit: Int, retryAfter: Int) -> GatewayError {
        .init(.tooManyRequests, "overloaded",
              "the gateway is serving its limit of \(limit) concurrent requests; retry later",
              retryAfter: retryAfter)
    }
    /// The client's own limit (`[[clients]]`), not the cluster's load (`overloaded`).
    static func quotaExceeded(_ refusal: ClientQuotas.Refusal) -> GatewayError {
        .init(.tooManyRequests, "quota_exceeded", refusal.message + "; retry after \(refusal.retryAfter) s",
              retryAfter: refusal.retryAfter)
    }
    static func maxTokensOverQuota(_ asked: Int, tpm: Int) -> GatewayError {
        .init(.unprocessableContent, "max_tokens_over_quota",
              "max_tokens \(asked) exceeds this client's whole quota of \(tpm) tokens per minute (tpm); ask for fewer")
    }
    static func auditUnavailable(retryAfter: Int) -> GatewayError {
        .init(.serviceUnavailable, "audit_unavailable",
              "the audit log cannot be written, and no request is served unaudited; the operator must make it writable "
              + "(disk full?) or set security.allow_unaudited_answers", retryAfter: retryAfter)
    }
    static func draining(retryAfter: Int) -> GatewayError {
        .init(.serviceUnavailable, "draining", "the gateway is shutting down; retry (another instance may serve it)",
              retryAfter: retryAfter)
    }
    static func deadline(_ ms: Int, partial: AnswerResponse?) -> GatewayError {
        .init(.gatewayTimeout, "deadline_exceeded",
              "the answer did not complete within the \(ms) ms deadline; `partial` holds what was generated",
              partial: partial)
    }
    static func incomplete(_ gap: SpanGap, partial: AnswerResponse?) -> GatewayError {
        .init(.badGateway, "incomplete_answer", gap.description, partial: partial)
    }
    static func upstream(_ message: String, partial: AnswerResponse? = nil) -> GatewayError {
        .init(.badGateway, "upstream_error", message, partial: partial)
    }

    /// Maps an error the router reported to the status a client can act on.
    static func fromWire(_ wire: WireErrorBody, retryAfter: Int, deadlineMs: Int,
                         partial: AnswerResponse?) -> GatewayError {
        switch wire.code {
        case .badRequest where wire.reason == WireErrorBody.Reason.promptTooLong:
            return .init(.unprocessableContent, "prompt_too_long", wire.message)
        case .badRequest:
            return .init(.unprocessableContent, "rejected_by_router", wire.message)
        case .overloaded:
            return .init(.tooManyRequests, "overloaded", "the cluster is overloaded: \(wire.message)",
                         retryAfter: retryAfter)
        case .unavailable:
            return .init(.serviceUnavailable, "unavailable", "no expert can serve the request: \(wire.message)",
                         retryAfter: retryAfter)
        case .deadline:
            return .deadline(deadlineMs, partial: partial)
        case .cancelled:
            return .upstream("the router cancelled the request: \(wire.message)", partial: partial)
        case .unspecified, .internalError, .version, .unauthorized:
            // Not the client's fault: the gateway↔router link or the router failed.
            return .upstream("the router failed the request (\(wire.code)): \(wire.message)", partial: partial)
        }
    }
}
