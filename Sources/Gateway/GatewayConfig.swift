import ClusterConfig
import Foundation
import Wire

/// Everything the gateway needs to run, with defaults that suit one machine.
/// The `gateway` subcommand fills it from flags / cluster config; tests build it directly.
/// Defaults of settings come from the schema (their one home); the rest are the gateway's own.
public struct GatewayConfig: Sendable {
    /// Address to listen on. Port 0 picks a free port (tests).
    public var host = Schema.defaultHostPort("gateway.listen").host
    public var port = Schema.defaultHostPort("gateway.listen").port

    // MARK: Limits (all enforced before anything reaches the router)

    /// Largest request body accepted; larger → 413.
    public var maxBodyBytes = Schema.defaultInt("limits.max_body_bytes")
    /// Largest prompt (question + context) in UTF-8 bytes → 422 `prompt_too_long`, before any
    /// work. Characters are no bound on what the models see (NFKC turns one `ﬃ` into three
    /// letters, one `㏂` into four), so the router and the experts count tokens after
    /// normalization against `limits.max_prompt_tokens`; this is the cheap first fence.
    public var maxPromptBytes = Schema.defaultInt("limits.max_prompt_bytes")
    /// Largest `max_tokens` a client may ask for → 422 `max_tokens_too_large`.
    public var maxTokens = Schema.defaultInt("limits.max_tokens")
    /// `max_tokens` when the client does not say.
    public var defaultMaxTokens: Int = 128
    /// Answer requests in flight at once (both endpoints); more → 429 with `Retry-After`.
    public var maxConcurrent = Schema.defaultInt("limits.max_concurrent")
    /// Seconds advertised in `Retry-After` on 429 and 503.
    public var retryAfterSeconds: Int = 1
    /// Per-request deadline when the client gives none (`deadline_ms`) → 504 with the partial answer.
    public var defaultDeadlineMs = Schema.defaultInt("gateway.deadline_ms")
    /// Largest `deadline_ms` a client may ask for.
    public var maxDeadlineMs: Int = 300_000
    /// The router enforces the deadline too and reports what it had; the gateway waits this much
    /// longer for that report before giving up on its own.
    public var deadlineGraceMs: Int = 250
    /// A later span arrived but an earlier one did not for this long → the answer cannot be
    /// completed: 502 `incomplete_answer` (never a silently truncated answer).
    public var spanGapTimeoutMs: Int = 5_000
    /// SSE comment sent when nothing else was sent for this long: keeps proxies from timing the
    /// stream out and detects a client that went away while generation is slow.
    public var keepAliveMs: Int = 10_000
    /// A connection must deliver a complete request (head and body) within this long of
    /// connecting or of its previous response ending, else 408 and close (slowloris); an idle
    /// keep-alive connection is closed after it. Answer time (streams included) does not count.
    public var readTimeoutMs = Schema.defaultInt("gateway.read_timeout_ms")
    /// Span length asked of the router (0 = router default).
    public var spanTokens = UInt32(Schema.defaultInt("gateway.span_tokens"))

    // MARK: Auth

    /// Accepted bearer tokens. Empty = no authentication (loopback / behind an authenticating proxy).
    public var authTokens: Set<String> = []
    /// Each token's client name (logs and the `client` metrics label; never the secret). A
    /// token without one is named `token-` + the first 8 hex digits of its FNV-1a fingerprint.
    public var clientNames: [String: String] = [:]
    /// The file the tokens came from, read again on SIGHUP (nil: tokens set in code).
    public var authTokensFile: String?
    /// `GET /metrics` needs a token too (the probes `/healthz` and `/readyz` never do).
    public var metricsAuth = Schema.defaultBool("gateway.metrics_auth")
    /// Listening beyond loopback with no tokens is refused at start unless this is set
    /// (`security.allow_unauthenticated`, `--allow-unauthenticated`).
    public var allowUnauthenticated = Schema.defaultBool("security.allow_unauthenticated")
    /// Named clients' limits (`[[clients]]`); a name no token carries limits nobody.
    public var clients: [ClientLimits] = []
    /// Failed token checks per client address per minute before its requests get 429 (0: off).
    public var authFailuresPerMinute = Schema.defaultInt("security.auth_failures_per_minute")

    // MARK: TLS

    /// PEM certificate chain and private key: serve HTTPS (nil: plain HTTP).
    public var tlsCert: String?
    public var tlsKey: String?
    /// PEM CA whose client certificates are accepted (nil: none asked for).
    public var tlsClientCA: String?
    /// A client without a certificate from `tlsClientCA` cannot connect.
    public var tlsRequireClientCert = Schema.defaultBool("gateway.tls_require_client_cert")
    /// Plain HTTP beyond loopback (behind a TLS-terminating proxy): `security.allow_plaintext_http`.
    public var allowPlaintextHTTP = Schema.defaultBool("security.allow_plaintext_http")

    public var servesTLS: Bool { tlsCert != nil }
    /// Every client proves who it is with a certificate.
    public var requiresClientCertificates: Bool { servesTLS && tlsClientCA != nil && tlsRequireClientCert }

    // MARK: Readiness

    /// Pools that must each have a live replica for `/readyz` to say ready (empty: any replica).
    public var readyRequiresPools: Set<PoolKind> = []

    /// Model name reported by `/v1/chat/completions` when the client's is empty.
    public var modelName: String = "mambaformer"

    public init() {}

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Checks the values make sense together; the `gateway` subcommand calls it at start-up.
    public func validate() throws {
        func need(_ ok: Bool, _ field: String, _ why: String) throws {
            if !ok { throw GatewayConfigError.invalidValue(field: field, reason: why) }
        }
        try need((0...65535).contains(port), "port", "must be 0...65535, got \(port)")
        try need(maxBodyBytes >= 1024, "maxBodyBytes", "must be at least 1024, got \(maxBodyBytes)")
        try need(maxPromptBytes >= 1, "maxPromptBytes", "must be positive, got \(maxPromptBytes)")
        try need(authFailuresPerMinute >= 0, "authFailuresPerMinute", "must not be negative")
        if isUnauthenticatedBeyondLoopback, !allowUnauthenticated {
            throw GatewayConfigError.unauthenticatedBeyondLoopback(host: host)
        }
        try need((tlsCert == nil) == (tlsKey == nil), "tlsCert", "gateway.tls_cert and gateway.tls_key go together: set both or neither")
        try need(tlsClientCA == nil || servesTLS, "tlsClientCA", "gateway.tls_client_ca needs gateway.tls_cert and gateway.tls_key")
        try need(!tlsRequireClientCert || tlsClientCA != nil, "tlsRequireClientCert",
                 "gateway.tls_require_client_cert needs gateway.tls_client_ca (the CA the certificates must come from)")
        if !servesTLS, !Self.isLoopback(host), !allowPlaintextHTTP {
            throw GatewayConfigError.plaintextBeyondLoopback(host: host)
        }
        try need(maxTokens >= 1, "maxTokens", "must be positive, got \(maxTokens)")
        try need((1...maxTokens).contains(defaultMaxTokens), "defaultMaxTokens",
                 "must be 1...maxTokens (\(maxTokens)), got \(defaultMaxTokens)")
        try need(maxConcurrent >= 1, "maxConcurrent", "must be positive, got \(maxConcurrent)")
        try need(retryAfterSeconds >= 0, "retryAfterSeconds", "must not be negative")
        try need(defaultDeadlineMs >= 1, "defaultDeadlineMs", "must be positive, got \(defaultDeadlineMs)")
        try need(maxDeadlineMs >= defaultDeadlineMs, "maxDeadlineMs", "must be >= defaultDeadlineMs")
        try need(deadlineGraceMs >= 0, "deadlineGraceMs", "must not be negative")
        try need(spanGapTimeoutMs >= 1, "spanGapTimeoutMs", "must be positive, got \(spanGapTimeoutMs)")
        try need(readTimeoutMs >= 1, "readTimeoutMs", "must be positive, got \(readTimeoutMs)")
        try need(keepAliveMs >= 100, "keepAliveMs", "must be at least 100, got \(keepAliveMs)")
    }

    /// Listening where other machines reach it, with no tokens.
    public var isUnauthenticatedBeyondLoopback: Bool {
        authTokens.isEmpty && !requiresClientCertificates && !Self.isLoopback(host)
    }

    /// Whether `host` only accepts connections from this machine.
    public static func isLoopback(_ host: String) -> Bool {
        let h = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        if h == "localhost" || h == "::1" || h == "0:0:0:0:0:0:0:1" { return true }
        let octets = h.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }

    /// The name a token goes by when its line gives none.
    public static func defaultClientName(_ token: String) -> String { "token-" + fnv1a64Hex(Array(token.utf8)).prefix(8) }

    /// Reads bearer tokens from a file: one per line, `name:token` or a bare token (named by
    /// `defaultClientName`); blank lines and `#` comments ignored. A name is 1-64 of
    /// `[A-Za-z0-9._-]` before the first `:`. Returns token → name. Fails (rather than silently
    /// disabling auth) on a missing or unreadable file, one that group or others may read
    /// (`chmod 600`, as ssh insists for keys), a file with no tokens, a repeated name, or a line
    /// that is not a valid token (whitespace inside, shorter than 16 characters).
    public static func loadAuthTokens(path: String) throws -> [String: String] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw GatewayConfigError.tokenFileUnreadable(path: path)
        }
        if let mode = (try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int, mode & 0o077 != 0 {
            throw GatewayConfigError.tokenFileTooOpen(path: path, mode: mode)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw GatewayConfigError.tokenFileInvalid(path: path, line: 0, reason: "not UTF-8 text")
        }
        var tokens: [String: String] = [:]
        var names = Set<String>()
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            var name: String?
            if let colon = line.firstIndex(of: ":"), (1...64).contains(line.distance(from: line.startIndex, to: colon)),
               line[..<colon].unicodeScalars.allSatisfy({ isNameScalar($0) }) {
                name = String(line[..<colon])
                line = String(line[line.index(after: colon)...])
            }
            if line.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value >= 0x7F }) {
                throw GatewayConfigError.tokenFileInvalid(
                    path: path, line: number + 1, reason: "a token must be printable ASCII without spaces")
            }
            if line.utf8.count < 16 {
                throw GatewayConfigError.tokenFileInvalid(
                    path: path, line: number + 1, reason: "token shorter than 16 characters (too easy to guess)")
            }
            let client = name ?? defaultClientName(line)
            guard names.insert(client).inserted else {
                throw GatewayConfigError.tokenFileInvalid(path: path, line: number + 1, reason: "the name \(client) is used twice")
            }
            tokens[line] = client
        }
        if tokens.isEmpty { throw GatewayConfigError.tokenFileEmpty(path: path) }
        return tokens
    }

    private static func isNameScalar(_ u: Unicode.Scalar) -> Bool {
        (u >= "A" && u <= "Z") || (u >= "a" && u <= "z") || (u >= "0" && u <= "9") || u == "." || u == "_" || u == "-"
    }
}

public enum GatewayConfigError: Error, CustomStringConvertible, Equatable {
    case invalidValue(field: String, reason: String)
    case tokenFileUnreadable(path: String)
    case tokenFileInvalid(path: String, line: Int, reason: String)
    case tokenFileEmpty(path: String)
    case tokenFileTooOpen(path: String, mode: Int)
    case unauthenticatedBeyondLoopback(host: String)
    case plaintextBeyondLoopback(host: String)
    case tlsFile(setting: String, path: String, reason: String)

    public var description: String {
        switch self {
        case .invalidValue(let field, let reason):
            return "gateway config: \(field) \(reason)"
        case .plaintextBeyondLoopback(let host):
            return "the gateway would serve plain HTTP on \(host), where prompts and answers cross the network in clear text: "
                + "set gateway.tls_cert and gateway.tls_key, listen on 127.0.0.1, or, behind a proxy that terminates TLS, "
                + "set security.allow_plaintext_http = true (--allow-plaintext-http)"
        case .tlsFile(let setting, let path, let reason):
            return "\(setting) \(path): \(reason)"
        case .tokenFileUnreadable(let path):
            return "auth token file \(path) cannot be read (missing or no permission)"
        case .tokenFileInvalid(let path, let line, let reason):
            return "auth token file \(path), line \(line): \(reason)"
        case .tokenFileEmpty(let path):
            return "auth token file \(path) holds no tokens (one per line; # starts a comment)"
        case .tokenFileTooOpen(let path, let mode):
            return "auth token file \(path) may be read by others (mode \(String(mode, radix: 8))): "
                + "chmod 600 it, owned by the gateway's user"
        case .unauthenticatedBeyondLoopback(let host):
            return "the gateway would listen on \(host) without authentication: set security.auth_tokens_file "
                + "(--auth-tokens-file), listen on 127.0.0.1, or, behind an authenticating proxy, "
                + "set security.allow_unauthenticated = true (--allow-unauthenticated)"
        }
    }
}
