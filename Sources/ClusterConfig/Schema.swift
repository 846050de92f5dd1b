// Every setting a node reads, with its type, allowed range and default. One table for all
// nodes, so that one file (/etc/mambaformer/cluster.toml) configures a whole host, and the
// same names work as environment variables (MAMBAFORMER_<SECTION>_<KEY>) and map to flags.

/// A setting's value, whatever its source.
public enum ConfigValue: Equatable, Sendable, CustomStringConvertible {
    case string(String)
    case int(Int)
    case bool(Bool)
    /// A list setting's values (a file's array, a comma-separated variable, a repeated flag).
    case list([ConfigValue])

    public var description: String {
        switch self {
        case .string(let s): return "\"\(s)\""
        case .int(let i): return "\(i)"
        case .bool(let b): return "\(b)"
        case .list(let items): return "[" + items.map(\.description).joined(separator: ", ") + "]"
        }
    }

    var typeName: String {
        switch self {
        case .string: return "a string"
        case .int: return "an integer"
        case .bool: return "a boolean"
        case .list: return "a list"
        }
    }
}

/// What a setting accepts. Checking happens once, at load, for every source.
public enum SettingType: Sendable {
    case string
    /// A path; "" means "none" where the setting is optional.
    case path
    /// A ZeroMQ endpoint: tcp://HOST:PORT (HOST may be * when binding), ipc://PATH or inproc://NAME.
    case endpoint
    /// HOST:PORT for the gateway's HTTP listener.
    case hostPort
    /// HOST:PORT, or "" for off (metrics endpoints).
    case optionalHostPort
    case int(ClosedRange<Int>)
    case bool
    case choice([String])
    /// Up to `maxCount` values of one type (endpoint lists, host lists). One value alone is a
    /// list of one everywhere, so a setting that becomes a list keeps every old file valid.
    indirect case list(SettingType, maxCount: Int)

    var expected: String {
        switch self {
        case .string, .path, .endpoint, .hostPort, .optionalHostPort, .choice: return "a string"
        case .int: return "an integer"
        case .bool: return "a boolean"
        case .list(let element, let maxCount): return "\(element.expected) or a list of up to \(maxCount)"
        }
    }

    /// Nil when `value` is acceptable, else why not.
    func check(_ value: ConfigValue) -> ConfigProblem.Kind? {
        switch (self, value) {
        case (.list(let element, let maxCount), .list(let items)):
            guard items.count <= maxCount else {
                return .outOfRange(value: "\(items.count) values", allowed: "at most \(maxCount)")
            }
            return items.lazy.compactMap(element.check).first
        case (.list(let element, _), _):
            return element.check(value)
        case (.string, .string), (.path, .string):
            return nil
        case (.endpoint, .string(let s)):
            return Self.endpointProblem(s).map { .invalidValue(value: value.description, reason: $0) }
        case (.optionalHostPort, .string(let s)) where s.isEmpty:
            return nil
        case (.hostPort, .string(let s)), (.optionalHostPort, .string(let s)):
            guard let (_, port) = Self.splitHostPort(s) else {
                return .invalidValue(value: value.description, reason: "expected HOST:PORT")
            }
            return (0...65535).contains(port) ? nil : .outOfRange(value: "port \(port)", allowed: "0...65535")
        case (.choice(let options), .string(let s)):
            return options.contains(s) ? nil : .outOfRange(value: value.description, allowed: options.joined(separator: ", "))
        case (.int(let range), .int(let i)):
            return range.contains(i) ? nil : .outOfRange(value: "\(i)", allowed: "\(range.lowerBound)...\(range.upperBound)")
        case (.bool, .bool):
            return nil
        default:
            return .wrongType(expected: expected, got: "\(value.typeName) (\(value))")
        }
    }

    /// Parses an environment variable's text as this type (the environment only has strings).
    func parse(environment text: String) -> ConfigValue? {
        switch self {
        case .list(let element, _):
            // Comma-separated; no element type here contains a comma.
            let items = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            let parsed = items.compactMap(element.parse(environment:))
            return parsed.count == items.count ? .list(parsed) : nil
        case .string, .path, .endpoint, .hostPort, .optionalHostPort, .choice:
            return .string(text)
        case .int:
            return Int(text.trimmingCharacters(in: .whitespaces)).map(ConfigValue.int)
        case .bool:
            switch text.lowercased() {
            case "1", "true", "yes", "on": return .bool(true)
            case "0", "false", "no", "off": return .bool(false)
            default: return nil
            }
        }
    }

    static func splitHostPort(_ s: String) -> (String, Int)? {
        guard let colon = s.lastIndex(of: ":") else { return nil }
        let host = String(s[..<colon])
        guard !host.isEmpty, let port = Int(s[s.index(after: colon)...]) else { return nil }
        return (host, port)
    }

    static func endpointProblem(_ s: String) -> String? {
        if s.hasPrefix("tcp://") {
            guard let (_, port) = splitHostPort(String(s.dropFirst(6))) else { return "expected tcp://HOST:PORT" }
            return (0...65535).contains(port) ? nil : "port \(port) is not 0...65535"
        }
        if s.hasPrefix("ipc://") { return s.count > 6 ? nil : "ipc:// needs a path" }
        if s.hasPrefix("inproc://") { return s.count > 9 ? nil : "inproc:// needs a name" }
        return "expected tcp://HOST:PORT or ipc://PATH"
    }
}

public struct Setting: Sendable {
    /// Section, e.g. `router` or `expert.emamba`.
    public let section: String
    public let key: String
    public let type: SettingType
    public let defaultValue: ConfigValue
    /// One line for `--help` and the docs; the default and the key are appended by `flagHelp`.
    public let help: String
    public var path: String { "\(section).\(key)" }
    /// The command-line flag that sets it where a command has one: `span_tokens` → `--span-tokens`.
    public var flag: String { "--" + key.replacingOccurrences(of: "_", with: "-") }
    /// `--help` text: what it does, its default and where else to set it.
    public var flagHelp: String {
        let shown: String
        switch defaultValue {
        case .string(let s) where s.isEmpty: shown = "none"
        case .string(let s): shown = s
        case .list(let items): shown = items.map { if case .string(let s) = $0 { return s } else { return $0.description } }.joined(separator: ",")
        default: shown = defaultValue.description
        }
        return "\(help) (default \(shown); \(path) in the file, \(environmentName))"
    }
    /// MAMBAFORMER_ROUTER_SPAN_TOKENS for router.span_tokens.
    public var environmentName: String {
        "MAMBAFORMER_" + path.uppercased().replacingOccurrences(of: ".", with: "_")
    }
}

public enum Schema {
    public static let pools = ["emamba", "et5"]
    /// Where a single-host install's nodes meet (systemd's RuntimeDirectory, mode 0750).
    public static let runtimeDirectory = "/run/mambaformer"
    public static let defaultFrontend = "ipc://\(runtimeDirectory)/frontend"
    public static let defaultBackend = "ipc://\(runtimeDirectory)/backend"
    /// Sections whose settings [SECTION.emamba] / [SECTION.et5] may override for one pool.
    public static let pooledSections = ["expert", "autoscale"]
    public static let sections = ["router", "gateway", "expert", "security", "limits", "autoscale", "audit"]
        + pooledSections.flatMap { section in pools.map { "\(section).\($0)" } }

    /// Settings of [expert] that [expert.emamba] / [expert.et5] may override for one pool.
    static let expertKeys: [(key: String, type: SettingType, value: ConfigValue, help: String)] = [
        // A replica serves every router listed (one connection each, one batch for all).
        ("router", .list(.endpoint, maxCount: 16), .list([.string(Schema.defaultBackend)]),
         "Every router's backend endpoint (a list: the replica serves each router and shares its capacity among them)"),
        ("model", .path, .string("models/demo"), "MambaFormer checkpoint folder, or one Hugging Face checkpoint folder"),
        ("threads", .int(1...64), .int(1), "BLAS threads in this process (one per process is best on small hosts)"),
        // bf16 halves memory and decode traffic against f32; int8 quarters it; w8a8 also
        // multiplies decode steps in int8 (AVX-512 VNNI).
        ("weights", .choice(["auto", "f32", "bf16", "int8", "w8a8"]), .string("auto"),
         "Weight matrices in memory: auto (as stored: bf16 stays bf16), f32, bf16 (rounded at load), int8 (quantized at load, one scale per row) or w8a8 (int8, and decode steps multiply in int8)"),
        ("capacity", .int(1...256), .int(8), "Sequences decoded together in one batch (announced to the router)"),
        ("max_sessions", .int(1...100_000), .int(256), "Sessions kept in the cache between spans (LRU)"),
        ("heartbeat_ms", .int(50...60_000), .int(1000), "Heartbeat interval in ms; a router silent for 3 intervals is reconnected to"),
        ("ignore_eos", .bool, .bool(false), "Never stop at EOS: every answer runs to its max tokens (benchmarks and tests)"),
        // Under systemd (--instance POOL-N) the port is a base: replica N listens on port + N,
        // so that one setting serves every replica of a host.
        ("metrics", .optionalHostPort, .string(""),
         "Serve Prometheus metrics at http://HOST:PORT/metrics (port 0 picks one; under systemd replica N adds N to the port)"),
        ("log_level", .choice(logLevels), .string("info"), "Log level (trace, debug, info, notice, warning, error, critical)"),
    ]

    /// Settings of [autoscale] that [autoscale.emamba] / [autoscale.et5] may override.
    /// Defaults: one replica of each pool and no more than the host has cores for; a target of
    /// 6 ongoing spans per replica is 0.7 of a full batch of 8 (the capacity guide's utilisation
    /// `u`); Ray Serve's 30 s upscale delay and look-back, and a 600 s downscale delay.
    static let autoscaleKeys: [(key: String, type: SettingType, value: ConfigValue, help: String)] = [
        ("min_replicas", .int(1...256), .int(1), "Fewest replicas of a pool the autoscaler keeps"),
        ("max_replicas", .int(1...256), .int(4), "Most replicas of a pool the autoscaler starts"),
        ("target_ongoing_spans", .int(1...4096), .int(6),
         "Spans running or queued at the routers per replica that a pool is sized for"),
        ("upscale_delay_s", .int(0...3600), .int(30), "Seconds a higher demand must last before replicas are added"),
        ("downscale_delay_s", .int(0...86_400), .int(600),
         "Seconds a lower demand must last before one replica is drained and stopped (per step)"),
        ("look_back_s", .int(1...3600), .int(30), "Seconds over which the demand is averaged"),
        ("max_step", .int(1...64), .int(2), "Most replicas added in one decision"),
    ]

    static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    public static let settings: [Setting] = {
        var all: [Setting] = []
        func add(_ section: String, _ key: String, _ type: SettingType, _ value: ConfigValue, _ help: String) {
            all.append(Setting(section: section, key: key, type: type, defaultValue: value, help: help))
        }
        // The router binds both endpoints; experts and gateways connect to them.
        // One host by default: ipc:// in a folder only the service's group may enter, so no
        // other local user (and nobody on the network) can submit or register. Several hosts:
        // tcp:// with CURVE (plain-text TCP needs security.allow_plaintext_wire).
        add("router", "frontend", .endpoint, .string(Schema.defaultFrontend), "ZeroMQ endpoint gateways connect to")
        add("router", "backend", .endpoint, .string(Schema.defaultBackend), "ZeroMQ endpoint experts connect to")
        add("router", "model", .path, .string("models/demo"),
            "MambaFormer checkpoint folder: its gate (when it has one) and both pools' tokenizers")
        add("router", "gate", .choice(["auto", "trained", "rule", "alternate"]), .string("auto"),
            "Gate: auto (trained if the checkpoint has one, else rule), trained, rule, or alternate (test/demo only)")
        add("router", "span_tokens", .int(1...256), .int(16), "Tokens per span")
        add("router", "first_span_tokens", .int(0...256), .int(0),
            "Tokens of an answer's first span, for a sooner first token (0: as span_tokens; a client's span_tokens caps it too)")
        add("router", "heartbeat_ms", .int(50...60_000), .int(1000), "Heartbeat interval in ms; a peer silent for 3 intervals is dead")
        add("router", "drain_timeout_ms", .int(0...600_000), .int(10_000),
            "On SIGTERM, how long answers in progress may take to finish before the router exits")
        add("router", "metrics", .optionalHostPort, .string(""), "Serve Prometheus metrics at http://HOST:PORT/metrics (port 0 picks one)")
        add("router", "log_level", .choice(logLevels), .string("info"), "Log level (trace, debug, info, notice, warning, error, critical)")

        add("gateway", "listen", .hostPort, .string("127.0.0.1:8080"), "HTTP address to listen on (HOST:PORT)")
        // Several routers: new answers are spread over the live ones; an answer whose router
        // dies continues on another.
        add("gateway", "router", .list(.endpoint, maxCount: 16), .list([.string(Schema.defaultFrontend)]),
            "Every router's frontend endpoint (a list: answers are spread over the live routers and move when one dies)")
        add("gateway", "deadline_ms", .int(1...3_600_000), .int(30_000), "Deadline in ms when the client gives none")
        add("gateway", "span_tokens", .int(0...256), .int(0), "Tokens per span asked of the router (0: the router's own)")
        // Slowloris: answering (streams) is not counted; idle keep-alive connections close after it too.
        add("gateway", "read_timeout_ms", .int(1...3_600_000), .int(30_000),
            "A request (head and body) must arrive within this many ms of connecting or of the previous response, else 408")
        add("gateway", "log_level", .choice(logLevels), .string("info"), "Log level (trace, debug, info, notice, warning, error, critical)")
        // HTTPS at the gateway; reloaded on SIGHUP (new connections get the new files).
        add("gateway", "tls_cert", .path, .string(""), "PEM certificate chain for HTTPS (with tls_key; \"\": plain HTTP)")
        add("gateway", "tls_key", .path, .string(""), "PEM private key of tls_cert (mode 600)")
        add("gateway", "tls_client_ca", .path, .string(""),
            "PEM CA of accepted client certificates (mTLS); a certificate's subject CN names a client no token names")
        add("gateway", "tls_require_client_cert", .bool, .bool(false),
            "Refuse clients without a certificate from tls_client_ca (else one presented must verify)")
        add("gateway", "metrics_auth", .bool, .bool(false), "GET /metrics needs a bearer token too (when tokens are configured)")

        for (key, type, value, help) in expertKeys {
            add("expert", key, type, value, help)
            // Pool sections have no defaults of their own: absent means "as [expert]".
            for pool in pools { add("expert.\(pool)", key, type, value, help + " (this pool only)") }
        }

        for (key, type, value, help) in autoscaleKeys {
            add("autoscale", key, type, value, help)
            for pool in pools { add("autoscale.\(pool)", key, type, value, help + " (this pool only)") }
        }
        // Several routers: their spans are summed (each its own); every expert serves them all.
        add("autoscale", "routers", .list(.endpoint, maxCount: 16), .list([.string(Schema.defaultFrontend)]),
            "The routers' frontend endpoints the autoscaler asks for each pool's load (a list; their spans are summed, their replicas are the same experts)")
        add("autoscale", "max_replicas_per_host", .int(0...1024), .int(0),
            "Expert replicas of both pools on one host, draining ones included (0: one per core)")
        add("autoscale", "interval_ms", .int(100...60_000), .int(1000), "How often the autoscaler asks the routers and decides")
        add("autoscale", "metrics", .optionalHostPort, .string(""), "Serve Prometheus metrics at http://HOST:PORT/metrics (port 0 picks one)")
        add("autoscale", "log_level", .choice(logLevels), .string("info"), "Log level (trace, debug, info, notice, warning, error, critical)")

        // CURVE: with `curve = true` every ZeroMQ link is encrypted and the router accepts
        // only the public keys found in `gateway_keys_dir` (frontend) and `expert_keys_dir`
        // (backend). Each node reads only its own files.
        add("security", "curve", .bool, .bool(false), "Encrypt and authenticate every ZeroMQ link with CURVE")
        // One key for all routers, or one per router in the order of gateway.router / expert.router.
        add("security", "router_public_key", .list(.path, maxCount: 16), .list([.string("/etc/mambaformer/keys/router.pub")]),
            "The routers' CURVE public keys (gateways and experts): one for every router, or one per router in the order of gateway.router and expert.router")
        add("security", "router_secret_key", .path, .string("/etc/mambaformer/keys/router.key"), "The router's CURVE secret key")
        // Roles: a host running both puts its key in both folders. Read again on SIGHUP.
        add("security", "gateway_keys_dir", .path, .string("/etc/mambaformer/keys/gateways"),
            "Public keys the router's frontend accepts (gateways); read again on SIGHUP")
        add("security", "expert_keys_dir", .path, .string("/etc/mambaformer/keys/experts"),
            "Public keys the router's backend accepts (experts); read again on SIGHUP")
        add("security", "allowed_keys_dir", .path, .string(""), "Deprecated: one folder whose keys may take either role (the 1.0 layout)")
        add("security", "gateway_secret_key", .path, .string("/etc/mambaformer/keys/gateway.key"), "The gateway's CURVE secret key")
        add("security", "expert_secret_key", .path, .string("/etc/mambaformer/keys/expert.key"), "An expert's CURVE secret key")
        add("security", "auth_tokens_file", .path, .string(""),
            "File of accepted bearer tokens, one per line, optionally NAME:TOKEN (no file: no authentication)")
        // An authenticating proxy in front, say.
        add("security", "allow_unauthenticated", .bool, .bool(false),
            "Let a gateway listen beyond loopback without bearer tokens (only behind an authenticating proxy)")
        // Prompts and answers are patient data, and a plain-text TCP port admits anyone.
        add("security", "allow_plaintext_wire", .bool, .bool(false), "Let a node speak plain text over tcp:// (CURVE off)")
        // Slows token guessing.
        add("security", "auth_failures_per_minute", .int(0...1_000_000), .int(30),
            "Failed token checks one client address may make per minute before 429 (0: no limit)")

        // Text in the audit log is patient data in a second place; an answer that could not be
        // audited is one the security office cannot account for.
        // Behind a proxy that terminates TLS, say.
        add("security", "allow_plaintext_http", .bool, .bool(false),
            "Let a gateway serve plain HTTP beyond loopback (only behind a proxy that terminates TLS)")
        add("security", "allow_audit_text", .bool, .bool(false),
            "Write the prompt and the answer themselves into the audit log, not only their keyed hashes (patient data in the log)")
        add("security", "allow_unaudited_answers", .bool, .bool(false),
            "When the audit log cannot be written, keep answering (default: new requests get 503 until it can)")

        // The gateway's audit trail: one HMAC-chained JSON line per API request.
        add("audit", "path", .path, .string(""), "Audit log file, one JSON line per API request (empty: no audit log)")
        add("audit", "hmac_key_file", .path, .string("/etc/mambaformer/keys/audit.key"),
            "Secret key (at least 32 bytes, mode 600) for the audit chain's MACs and the prompt and answer hashes")
        add("audit", "rotate_bytes", .int(4096...(1 << 40)), .int(64 << 20),
            "Rotate the audit log when it reaches this size; the chain continues in the next file")
        add("audit", "head_interval_s", .int(1...3600), .int(60),
            "How often the audit chain's head (last sequence number and MAC) is written to the gateway's log")
        add("audit", "queue", .int(1...1_000_000), .int(1024), "Audit lines waiting to be written before the log counts as failed")

        add("limits", "max_concurrent", .int(1...100_000), .int(64), "Answer requests in flight at one gateway before 429")
        add("limits", "max_tokens", .int(1...65_536), .int(512), "Largest max_tokens a client may ask for")
        add("limits", "max_body_bytes", .int(1024...(64 << 20)), .int(256 * 1024), "Largest request body in bytes")
        add("limits", "max_prompt_bytes", .int(64...(16 << 20)), .int(32 * 1024),
            "Largest prompt (question + context) in UTF-8 bytes, checked by the gateway before any work")
        add("limits", "max_prompt_tokens", .int(16...1_000_000), .int(2048),
            "Largest prompt in each pool's tokens after normalization, counted by the router and again by each expert")
        add("limits", "max_requests", .int(1...1_000_000), .int(1024), "Requests in progress at the router before new ones are refused (retryable)")
        add("limits", "max_queued_spans", .int(1...1_000_000), .int(64),
            "Spans that may wait per pool before new requests are refused or moved to the other pool")
        add("limits", "fallback_on_overload", .bool, .bool(true),
            "Move a saturated pool's new spans to the other pool instead of refusing them")
        return all
    }()

    static let byPath: [String: Setting] = Dictionary(uniqueKeysWithValues: settings.map { ($0.path, $0) })

    public static func setting(_ path: String) -> Setting? { byPath[path] }

    /// A setting's built-in default, for the node structs that tests build without a file:
    /// the schema stays the one home of every default.
    public static func defaultValue(_ path: String) -> ConfigValue {
        guard let setting = byPath[path] else { preconditionFailure("\(path) is not in Schema.settings") }
        return setting.defaultValue
    }
    public static func defaultInt(_ path: String) -> Int {
        guard case .int(let i) = defaultValue(path) else { preconditionFailure("\(path) is not an integer setting") }
        return i
    }
    public static func defaultString(_ path: String) -> String {
        guard case .string(let s) = defaultValue(path) else { preconditionFailure("\(path) is not a string setting") }
        return s
    }
    public static func defaultStrings(_ path: String) -> [String] {
        guard case .list(let items) = defaultValue(path) else { preconditionFailure("\(path) is not a list setting") }
        return items.compactMap { if case .string(let s) = $0 { return s } else { return nil } }
    }
    public static func defaultHostPort(_ path: String) -> (host: String, port: Int) {
        guard let hostPort = SettingType.splitHostPort(defaultString(path)) else { preconditionFailure("\(path) is not HOST:PORT") }
        return (hostPort.0, hostPort.1)
    }
    public static func defaultBool(_ path: String) -> Bool {
        guard case .bool(let b) = defaultValue(path) else { preconditionFailure("\(path) is not a boolean setting") }
        return b
    }

    /// The closest known name in `section` (for "did you mean"), if close enough to be a typo.
    static func suggestion(for key: String, in section: String?) -> String? {
        let candidates = section.map { s in settings.filter { $0.section == s }.map(\.key) } ?? sections
        let best = candidates.map { ($0, editDistance($0, key)) }.min { $0.1 < $1.1 }
        guard let best, best.1 <= max(2, key.count / 3) else { return nil }
        return section.map { "\($0).\(best.0)" } ?? best.0
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        var row = Array(0...b.count)
        for i in 1...a.count {
            var previous = row[0]
            row[0] = i
            for j in stride(from: 1, through: b.count, by: 1) {
                let current = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                previous = current
            }
        }
        return row[b.count]
    }
}
