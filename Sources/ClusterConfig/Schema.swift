// Every setting a node reads, with its type, allowed range and default. One table for all
// nodes, so that one file (/etc/mambaformer/cluster.toml) configures a whole host, and the
// same names work as environment variables (MAMBAFORMER_<SECTION>_<KEY>) and map to flags.

/// A setting's value, whatever its source.
public enum ConfigValue: Equatable, Sendable, CustomStringConvertible {
    case string(String)
    case int(Int)
    case bool(Bool)

    public var description: String {
        switch self {
        case .string(let s): return "\"\(s)\""
        case .int(let i): return "\(i)"
        case .bool(let b): return "\(b)"
        }
    }

    var typeName: String {
        switch self {
        case .string: return "a string"
        case .int: return "an integer"
        case .bool: return "a boolean"
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

    var expected: String {
        switch self {
        case .string, .path, .endpoint, .hostPort, .optionalHostPort, .choice: return "a string"
        case .int: return "an integer"
        case .bool: return "a boolean"
        }
    }

    /// Nil when `value` is acceptable, else why not.
    func check(_ value: ConfigValue) -> ConfigProblem.Kind? {
        switch (self, value) {
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
    public var path: String { "\(section).\(key)" }
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
    public static let sections = ["router", "gateway", "expert", "security", "limits"] + pools.map { "expert.\($0)" }

    /// Settings of [expert] that [expert.emamba] / [expert.et5] may override for one pool.
    static let expertKeys: [(String, SettingType, ConfigValue)] = [
        ("router", .endpoint, .string(Schema.defaultBackend)),
        ("model", .path, .string("models/demo")),
        ("threads", .int(1...64), .int(1)),
        // How weight matrices are held: auto = as the checkpoint stores them (bf16 stays bf16),
        // f32 = widened, bf16 = rounded at load (half the memory and decode traffic of f32),
        // int8 = quantized at load, one scale per row (a quarter); w8a8 = int8, and decode
        // steps multiply in int8 too (AVX-512 VNNI).
        ("weights", .choice(["auto", "f32", "bf16", "int8", "w8a8"]), .string("auto")),
        ("capacity", .int(1...256), .int(8)),
        ("max_sessions", .int(1...100_000), .int(256)),
        ("heartbeat_ms", .int(50...60_000), .int(1000)),
        ("ignore_eos", .bool, .bool(false)),
        // Prometheus /metrics; "" = off. Under systemd (--instance POOL-N) the port is a base:
        // replica N listens on port + N, so that one setting serves every replica of a host.
        ("metrics", .optionalHostPort, .string("")),
        ("log_level", .choice(logLevels), .string("info")),
    ]

    static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    public static let settings: [Setting] = {
        var all: [Setting] = []
        func add(_ section: String, _ key: String, _ type: SettingType, _ value: ConfigValue) {
            all.append(Setting(section: section, key: key, type: type, defaultValue: value))
        }
        // The router binds both endpoints; experts and gateways connect to them.
        // One host by default: ipc:// in a folder only the service's group may enter, so no
        // other local user (and nobody on the network) can submit or register. Several hosts:
        // tcp:// with CURVE (plain-text TCP needs security.allow_plaintext_wire).
        add("router", "frontend", .endpoint, .string(Schema.defaultFrontend))
        add("router", "backend", .endpoint, .string(Schema.defaultBackend))
        add("router", "model", .path, .string("models/demo"))
        add("router", "gate", .choice(["auto", "trained", "rule", "alternate"]), .string("auto"))
        add("router", "span_tokens", .int(1...256), .int(16))
        add("router", "heartbeat_ms", .int(50...60_000), .int(1000))
        add("router", "drain_timeout_ms", .int(0...600_000), .int(10_000))
        add("router", "metrics", .optionalHostPort, .string(""))   // Prometheus /metrics; "" = off
        add("router", "log_level", .choice(logLevels), .string("info"))

        add("gateway", "listen", .hostPort, .string("127.0.0.1:8080"))
        add("gateway", "router", .endpoint, .string(Schema.defaultFrontend))
        add("gateway", "deadline_ms", .int(1...3_600_000), .int(30_000))
        add("gateway", "span_tokens", .int(0...256), .int(0))
        // A connection must deliver a whole request (head and body) within this many ms of
        // connecting or of its previous response, else 408 + close (slowloris); idle
        // keep-alive connections close after it too. Answering (streams) is not counted.
        add("gateway", "read_timeout_ms", .int(1...3_600_000), .int(30_000))
        add("gateway", "log_level", .choice(logLevels), .string("info"))
        // GET /metrics needs a bearer token too (when tokens are configured).
        add("gateway", "metrics_auth", .bool, .bool(false))

        for (key, type, value) in expertKeys {
            add("expert", key, type, value)
            // Pool sections have no defaults of their own: absent means "as [expert]".
            for pool in pools { add("expert.\(pool)", key, type, value) }
        }

        // CURVE: with `curve = true` every ZeroMQ link is encrypted and the router accepts
        // only the public keys found in `gateway_keys_dir` (frontend) and `expert_keys_dir`
        // (backend). Each node reads only its own files.
        add("security", "curve", .bool, .bool(false))
        add("security", "router_public_key", .path, .string("/etc/mambaformer/keys/router.pub"))
        add("security", "router_secret_key", .path, .string("/etc/mambaformer/keys/router.key"))
        // Roles: the router's frontend accepts only gateway keys, its backend only expert keys
        // (a host running both puts its key in both folders). Read again on SIGHUP.
        add("security", "gateway_keys_dir", .path, .string("/etc/mambaformer/keys/gateways"))
        add("security", "expert_keys_dir", .path, .string("/etc/mambaformer/keys/experts"))
        // Deprecated: one folder whose keys may take either role (the 1.0 layout). "" = none.
        add("security", "allowed_keys_dir", .path, .string(""))
        add("security", "gateway_secret_key", .path, .string("/etc/mambaformer/keys/gateway.key"))
        add("security", "expert_secret_key", .path, .string("/etc/mambaformer/keys/expert.key"))
        // Bearer tokens the gateway accepts, one per line; "" = no authentication.
        add("security", "auth_tokens_file", .path, .string(""))
        // A gateway listening beyond loopback with no token file refuses to start unless this
        // is true (an authenticating proxy in front, say).
        add("security", "allow_unauthenticated", .bool, .bool(false))
        // A node that would speak plain text over TCP (CURVE off) refuses to start unless this
        // is true: prompts and answers are patient data, and a plain-text TCP port admits anyone.
        add("security", "allow_plaintext_wire", .bool, .bool(false))
        // Failed token checks one client address may make per minute; past them its requests
        // get 429 with Retry-After (slows token guessing). 0 = no limit.
        add("security", "auth_failures_per_minute", .int(0...1_000_000), .int(30))

        add("limits", "max_concurrent", .int(1...100_000), .int(64))
        add("limits", "max_tokens", .int(1...65_536), .int(512))
        add("limits", "max_body_bytes", .int(1024...(64 << 20)), .int(256 * 1024))
        // Question + context in UTF-8 bytes, checked by the gateway before any work.
        add("limits", "max_prompt_bytes", .int(64...(16 << 20)), .int(32 * 1024))
        // Question + context in each pool's tokens after normalization, counted by the router
        // with both tokenizers and again by each expert with its own.
        add("limits", "max_prompt_tokens", .int(16...1_000_000), .int(2048))
        add("limits", "max_requests", .int(1...1_000_000), .int(1024))
        add("limits", "max_queued_spans", .int(1...1_000_000), .int(64))
        add("limits", "fallback_on_overload", .bool, .bool(true))
        return all
    }()

    static let byPath: [String: Setting] = Dictionary(uniqueKeysWithValues: settings.map { ($0.path, $0) })

    public static func setting(_ path: String) -> Setting? { byPath[path] }

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
