import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOHTTP1

/// Per-request state the gateway adds to Hummingbird's context.
public struct GatewayRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// From `X-Request-Id` (when well-formed) or generated; echoed, logged, sent to the router.
    public var requestId: String = ""

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
    }
}

extension HTTPField.Name {
    static let requestId = HTTPField.Name("X-Request-Id")!
    static let accelBuffering = HTTPField.Name("X-Accel-Buffering")!
}

/// The outermost middleware: request id, error rendering, metrics, one access-log line.
/// Every response — including 404s and errors thrown anywhere below — passes through here, so
/// every one carries `X-Request-Id`, a JSON error body and a count in `/metrics`.
/// The access log never contains the body: prompts and answers are patient data.
struct FrontMiddleware: RouterMiddleware {
    typealias Context = GatewayRequestContext
    let metrics: GatewayMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        var context = context
        let requestId = Self.requestId(from: request.headers[.requestId])
        context.requestId = requestId
        context.logger[metadataKey: "request_id"] = .string(requestId)
        let endpoint = Self.endpointLabel(request.uri.path)

        var response: Response
        do {
            response = try await next(request, context)
        } catch {
            let gatewayError = Self.gatewayError(from: error, request: request)
            // Only the unexpected is an error here; the answer path logs its own failures.
            if gatewayError.status == .internalServerError {
                context.logger.error("request failed", metadata: ["error": "\(error)"])
            }
            response = Self.errorResponse(gatewayError, requestId: requestId)
        }
        response.headers[.requestId] = requestId

        // Count and time the response when its last byte is written (streams can last minutes).
        let status = response.status.code
        let logger = context.logger
        let method = request.method.rawValue
        let body = response.body
        response.body = ResponseBody(contentLength: body.contentLength) { writer in
            defer {
                let elapsed = ContinuousClock.now - started
                metrics.request(endpoint: endpoint, status: status, duration: elapsed)
                logger.info("\(method) \(endpoint) \(status)",
                            metadata: ["ms": "\(Double(elapsed / .microseconds(1)) / 1000)"])
            }
            try await body.write(writer)
        }
        return response
    }

    /// Accept a client's id only if it is short printable ASCII without separators (it goes into
    /// headers, logs and wire messages); otherwise generate one.
    static func requestId(from header: String?) -> String {
        if let header, (1...128).contains(header.utf8.count),
           header.utf8.allSatisfy({ c in
               (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                   || c == 0x2D || c == 0x5F || c == 0x2E || c == 0x3A
           }) {
            return header
        }
        return UUID().uuidString.lowercased()
    }

    /// Metrics label: the route, or "other" (unknown paths must not explode label cardinality).
    static func endpointLabel(_ path: String) -> String {
        let known = ["/v1/answer", "/v1/chat/completions", "/healthz", "/readyz", "/metrics"]
        return known.contains(path) ? path : "other"
    }

    static func gatewayError(from error: Error, request: Request) -> GatewayError {
        switch error {
        case let e as GatewayError:
            return e
        case let e as RequestReadTimeout.Expired:
            // The 408 is already on the wire (RequestReadTimeout wrote it); this one is dropped.
            return .requestTimeout(ms: Int(e.timeout.nanoseconds / 1_000_000))
        case let e as HTTPParserError:
            // Broken framing inside the body; MalformedRequestReply has answered already.
            return GatewayError(.badRequest, "malformed_request", "not a valid HTTP/1.1 request (\(e))")
        case let e as HTTPError:
            switch e.status {
            case .notFound:
                return GatewayError(.notFound, "not_found", "no endpoint \(request.method.rawValue) \(request.uri.path)")
            case .methodNotAllowed:
                return GatewayError(.methodNotAllowed, "method_not_allowed",
                                    "\(request.method.rawValue) is not allowed on \(request.uri.path)")
            case .contentTooLarge:
                return GatewayError(.contentTooLarge, "body_too_large", "request body too large")
            default:
                return GatewayError(e.status, "http_error", e.body ?? e.status.reasonPhrase)
            }
        default:
            return GatewayError(.internalServerError, "internal_error", "the gateway failed unexpectedly; see its log")
        }
    }

    static func errorResponse(_ error: GatewayError, requestId: String) -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let seconds = error.retryAfter { headers[.retryAfter] = String(seconds) }
        if error.status == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
        if error.closesConnection { headers[.connection] = "close" }
        let body = JSON.encode(ErrorEnvelope(error, requestId: requestId)) + "\n"
        return Response(status: error.status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}

/// Bearer-token check for `/v1/*` (probes and metrics stay open: they carry no patient data and
/// orchestrators call them without credentials). Tokens are compared in constant time, and every
/// configured token is compared, so timing reveals neither a prefix nor which token matched.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = GatewayRequestContext
    let tokens: [[UInt8]]

    init(tokens: Set<String>) { self.tokens = tokens.map { Array($0.utf8) } }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard !tokens.isEmpty, request.uri.path.hasPrefix("/v1/") else {
            return try await next(request, context)
        }
        guard let presented = Self.bearerToken(request.headers[.authorization]) else {
            throw GatewayError.unauthorized
        }
        var matched = false
        for token in tokens where Self.constantTimeEquals(token, presented) { matched = true }
        guard matched else { throw GatewayError.unauthorized }
        return try await next(request, context)
    }

    static func bearerToken(_ header: String?) -> [UInt8]? {
        guard let header else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : Array(token.utf8)
    }

    /// Time depends only on the lengths, never on where the bytes differ.
    static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var diff: UInt8 = a.count == b.count ? 0 : 1
        let n = max(a.count, b.count)
        for i in 0..<n {
            let x = i < a.count ? a[i] : 0
            let y = i < b.count ? b[i] : 0
            diff |= x ^ y
        }
        return diff == 0
    }
}
