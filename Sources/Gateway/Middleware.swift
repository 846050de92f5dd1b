import Foundation
import GatewayClient
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1

/// Per-request state the gateway adds to Hummingbird's context.
public struct GatewayRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// From `X-Request-Id` (when well-formed) or generated; echoed, logged, sent to the router.
    public var requestId: String = ""
    /// The peer's IP address ("" when unknown, e.g. in tests without a socket): logged with
    /// every refused request, and the key of the failed-token throttle.
    public var clientAddress: String
    /// The connection (its TLS handler holds the client's certificate).
    let channel: any Channel
    /// The authenticated client's name, set by the door for the access log and the metrics
    /// that the outer middleware writes (shared: the context is copied on the way in).
    let client = ClientName()
    /// What this request's audit line will say (when there is an audit log).
    let audit = AuditNote()

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.clientAddress = source.channel.remoteAddress?.ipAddress ?? ""
        self.channel = source.channel
    }
}

/// The name a request authenticated as (nil: none, or authentication is off).
final class ClientName: @unchecked Sendable {
    private let lock = NSLock()
    private var _value: String?
    var value: String? {
        get { lock.lock(); defer { lock.unlock() }; return _value }
        set { lock.lock(); _value = newValue; lock.unlock() }
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
    /// The audit trail (nil: none): every request but the probes and `/metrics` gets a line.
    var audit: GatewayAudit? = nil
    var retryAfterSeconds = 1

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        var context = context
        let requestId = Self.requestId(from: request.headers[.requestId])
        context.requestId = requestId
        context.logger[metadataKey: "request_id"] = .string(requestId)
        let endpoint = Self.endpointLabel(request.uri.path)
        let note = context.audit
        let audit = Self.isProbe(request) ? nil : self.audit
        if let audit {
            note.begin(audit, requestId: requestId, address: context.clientAddress, method: request.method.rawValue,
                       endpoint: endpoint == "other" ? String(decoding: AuthMiddleware.canonicalPath(request.uri.path).utf8.prefix(256),
                                                              as: UTF8.self) : endpoint)
        }

        var response: Response
        var errorCode: String?
        do {
            if let audit, audit.refusesRequests { throw GatewayError.auditUnavailable(retryAfter: retryAfterSeconds) }
            response = try await next(request, context)
        } catch {
            let gatewayError = Self.gatewayError(from: error, request: request)
            // Only the unexpected is an error here; the answer path logs its own failures.
            if gatewayError.status == .internalServerError {
                context.logger.error("request failed", metadata: ["error": "\(error)"])
            }
            errorCode = gatewayError.code
            note.answered(gatewayError.partial)
            // Not audited: a refusal because the log is down cannot be written; an address the
            // throttle already blocks would let one client fill the disk (both are counted).
            if gatewayError.code == "audit_unavailable" || gatewayError.code == "auth_throttled" { note.discard() }
            response = Self.errorResponse(gatewayError, requestId: requestId)
        }
        // Whole responses are audited before any byte of them is sent; a stream seals its line
        // before its last event (Endpoints.sse). No line, no answer.
        if let audit {
            note.authenticated(as: context.client.value)
            if !note.streaming, !(await audit.seal(note, status: Int(response.status.code), error: errorCode)) {
                response = Self.errorResponse(.auditUnavailable(retryAfter: retryAfterSeconds), requestId: requestId)
            }
        }
        response.headers[.requestId] = requestId

        // Count and time the response when its last byte is written (streams can last minutes).
        let status = response.status.code
        let logger = context.logger
        let method = request.method.rawValue
        let client = context.clientAddress
        let clientName = context.client
        let body = response.body
        response.body = ResponseBody(contentLength: body.contentLength) { writer in
            defer {
                // A stream that ended early (the client hung up): its line still gets written.
                if let audit, !note.isSealed {
                    Task { _ = await audit.seal(note, status: Int(status), error: "client_closed") }
                }
                let elapsed = ContinuousClock.now - started
                let name = clientName.value
                metrics.request(endpoint: endpoint, status: status, duration: elapsed, client: name)
                var metadata: Logger.Metadata = ["ms": "\(Double(elapsed / .microseconds(1)) / 1000)"]
                if let name { metadata["client_name"] = .string(name) }
                // Who was refused (the door's 401s and 429s, any 4xx): an operator tracing a
                // probe of the API needs the address; successful requests stay anonymous.
                if (400..<500).contains(status) { metadata["client"] = .string(client) }
                logger.info("\(method) \(endpoint) \(status)", metadata: metadata)
            }
            try await body.write(writer)
        }
        return response
    }

    /// Probes and metrics: no audit line (orchestrators call them every few seconds, and they
    /// carry no patient data).
    static func isProbe(_ request: Request) -> Bool {
        guard request.method == .get else { return false }
        switch AuthMiddleware.canonicalPath(request.uri.path) {
        case "/healthz", "/readyz", "/metrics": return true
        default: return false
        }
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
        let known = Endpoints.routes.map(\.path)
        let canonical = AuthMiddleware.canonicalPath(path)
        return known.contains(canonical) ? canonical : "other"
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
                // A method no route lists (TRACE, a made-up one) on a path that exists: 405 too.
                let path = AuthMiddleware.canonicalPath(request.uri.path)
                if let route = Endpoints.routes.first(where: { $0.path == path }) {
                    return .methodNotAllowed(path: route.path, allowed: route.method)
                }
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
        if let allow = error.allow { headers[.allow] = allow }
        if error.status == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
        if error.closesConnection { headers[.connection] = "close" }
        let body = JSON.encode(ErrorEnvelope(error, requestId: requestId)) + "\n"
        return Response(status: error.status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}

/// The door. Every request needs a valid bearer token (when tokens are configured) except the
/// allow-listed probes: `GET /healthz`, `GET /readyz`, and `GET /metrics` unless
/// `metricsAuth`. The decision is taken on the path as the router will resolve it
/// (`canonicalPath`), and anything not on the list needs a token, so no spelling of a path
/// (`//v1/answer`, `/v1/./answer`, `/V1/answer`, `%2F`) can reach a handler without one.
///
/// Tokens are compared in constant time, and every configured token is compared, so timing
/// reveals neither a prefix nor which token matched. Failed checks are counted per client
/// address (`AuthFailureThrottle`): past the limit that address gets 429 with `Retry-After`.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = GatewayRequestContext
    let tokens: GatewayTokens
    let metricsAuth: Bool
    let throttle: AuthFailureThrottle
    /// TLS asks for client certificates: a verified one's subject CN names the client when no
    /// token line does (and is the only name when there are no tokens).
    let clientCertificates: Bool

    init(tokens: GatewayTokens, metricsAuth: Bool = false, failuresPerMinute: Int = 0, clientCertificates: Bool = false) {
        self.tokens = tokens
        self.metricsAuth = metricsAuth
        self.throttle = AuthFailureThrottle(perMinute: failuresPerMinute)
        self.clientCertificates = clientCertificates
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let current = tokens.current
        var certificateName: String?
        if clientCertificates {
            switch await GatewayTLS.peerCommonName(context.channel) {
            case .none: break
            case .valid(let name): certificateName = name
            case .invalid(let name):
                // A name that cannot be a client's could neither be limited nor told apart.
                if !isOpenProbe(request) { throw GatewayError.certificateNameInvalid(String(name.prefix(64))) }
            }
        }
        guard !current.isEmpty, !isOpenProbe(request) else {
            if let certificateName { context.client.value = certificateName }
            return try await next(request, context)
        }
        let client = context.clientAddress
        if let wait = throttle.blockedFor(client) {
            throw GatewayError.authThrottled(retryAfter: wait)
        }
        guard let presented = Self.bearerToken(request.headers[.authorization]) else {
            throttle.failed(client)
            throw GatewayError.unauthorized
        }
        var matched: GatewayTokens.Token?
        for token in current where Self.constantTimeEquals(token.secret, presented) { matched = token }
        guard let token = matched else {
            throttle.failed(client)
            throw GatewayError.unauthorized
        }
        context.client.value = token.named ? token.name : certificateName ?? token.name
        return try await next(request, context)
    }

    /// The allow-list: probes carry no patient data, and orchestrators call them without credentials.
    func isOpenProbe(_ request: Request) -> Bool {
        guard request.method == .get else { return false }
        switch Self.canonicalPath(request.uri.path) {
        case "/healthz", "/readyz": return true
        case "/metrics": return !metricsAuth
        default: return false
        }
    }

    /// The path as Hummingbird's router matches it: components split on `/` with empty ones
    /// dropped (`//healthz/` resolves like `/healthz`). Nothing else is undone (dot segments,
    /// percent-escapes and case reach the router as written and match no route), so a path
    /// that differs here from an allow-listed probe needs a token, whatever it resolves to.
    static func canonicalPath(_ path: String) -> String {
        "/" + path.split(separator: "/", omittingEmptySubsequences: true).joined(separator: "/")
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

/// Counts failed token checks per client address in one-minute windows. Past `perMinute`
/// failures, the address is refused (429) until its window ends, valid token or not: a
/// guesser learns nothing more. The table is bounded: when full, expired entries are swept
/// (at most once a second, so a flood of new addresses costs O(1) each), then an arbitrary
/// entry goes. Behind a reverse proxy every client has the proxy's address: throttle there.
// Sendable: `windows` is read and written under `lock` only.
final class AuthFailureThrottle: @unchecked Sendable {
    struct Window { var startedNs: UInt64; var failures: Int }
    let perMinute: Int
    let maxAddresses: Int
    private let windowNs: UInt64 = 60_000_000_000
    private var windows: [String: Window] = [:]
    private var lastSweepNs: UInt64 = 0
    private let lock = NSLock()
    private let now: @Sendable () -> UInt64

    init(perMinute: Int, maxAddresses: Int = 10_000,
         now: @escaping @Sendable () -> UInt64 = { DispatchTime.now().uptimeNanoseconds }) {
        self.perMinute = perMinute; self.maxAddresses = maxAddresses; self.now = now
    }

    /// Seconds until `address` may try again, nil when it may now.
    func blockedFor(_ address: String) -> Int? {
        guard perMinute > 0 else { return nil }
        lock.lock(); defer { lock.unlock() }
        let t = now()
        guard let w = windows[address], t - w.startedNs < windowNs, w.failures >= perMinute else { return nil }
        return Int((windowNs - (t - w.startedNs) + 999_999_999) / 1_000_000_000)
    }

    func failed(_ address: String) {
        guard perMinute > 0 else { return }
        lock.lock(); defer { lock.unlock() }
        let t = now()
        if var w = windows[address], t - w.startedNs < windowNs {
            w.failures += 1
            windows[address] = w
            return
        }
        if windows[address] == nil, windows.count >= maxAddresses {
            if t - lastSweepNs >= 1_000_000_000 {
                lastSweepNs = t
                windows = windows.filter { t - $0.value.startedNs < windowNs }
            }
            if windows.count >= maxAddresses { windows.remove(at: windows.startIndex) }
        }
        windows[address] = Window(startedNs: t, failures: 1)
    }
}

/// The accepted tokens and their clients' names, replaced whole on a reload (SIGHUP): a
/// request sees either the old set or the new one.
public final class GatewayTokens: @unchecked Sendable {
    struct Token {
        let name: String
        let secret: [UInt8]
        /// The token file gave the name (`name:token`); else it is the fingerprint name.
        let named: Bool
    }
    private let lock = NSLock()
    private var tokens: [Token] = []

    public init(_ config: GatewayConfig) { replace(config.authTokens, names: config.clientNames) }

    var current: [Token] { lock.lock(); defer { lock.unlock() }; return tokens }
    public var count: Int { current.count }

    public func replace(_ secrets: Set<String>, names: [String: String]) {
        let fresh = secrets.sorted().map { secret in
            Token(name: names[secret] ?? GatewayConfig.defaultClientName(secret), secret: Array(secret.utf8),
                  named: names[secret].map { $0 != GatewayConfig.defaultClientName(secret) } ?? false)
        }
        lock.lock(); tokens = fresh; lock.unlock()
    }
}
