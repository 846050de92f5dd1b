import Foundation

/// Values given on the command line. Only flags the user actually passed are set, so that
/// an unset flag lets the environment, the file or the default through.
public struct ConfigOverrides: Sendable {
    var values: [String: (value: ConfigValue, flag: String)] = [:]
    public init() {}

    // Each command maps its flags to settings with one `set` per flag: that is its table.
    // The flag's name defaults to the setting's (`router.span_tokens` → `--span-tokens`).

    public mutating func set(_ path: String, _ value: ConfigValue?, flag: String? = nil) {
        if let value { values[path] = (value, flag ?? Schema.setting(path)?.flag ?? path) }
    }
    public mutating func set(_ path: String, _ value: String?, flag: String? = nil) { set(path, value.map(ConfigValue.string), flag: flag) }
    public mutating func set<I: BinaryInteger>(_ path: String, _ value: I?, flag: String? = nil) {
        // A number too big for Int cannot be in range anyway: clamp so the range check reports it.
        set(path, value.map { ConfigValue.int(Int(clamping: $0)) }, flag: flag)
    }
    /// A flag (`--no-fallback`) sets the setting only when given: `given ? value : nil`.
    public mutating func set(_ path: String, _ value: Bool?, flag: String? = nil) { set(path, value.map(ConfigValue.bool), flag: flag) }
    /// A repeatable flag: nothing when it was not given.
    public mutating func set(_ path: String, _ values: [String], flag: String? = nil) {
        if !values.isEmpty { set(path, ConfigValue.list(values.map(ConfigValue.string)), flag: flag) }
    }
}

/// The configuration of every node, resolved from four layers:
/// flags > environment (MAMBAFORMER_<SECTION>_<KEY>) > file > built-in defaults.
///
/// Everything is checked at load: an unknown key, a wrong type or an out-of-range value in
/// any layer refuses the whole configuration, naming where the value came from.
public struct ClusterConfig {
    public static let defaultPath = "/etc/mambaformer/cluster.toml"
    /// Names a configuration file when `--config` is not given.
    public static let pathVariable = "MAMBAFORMER_CONFIG"

    /// The file read, if any (none: defaults + environment + flags).
    public let file: ConfigFile?
    private let environment: [String: String]
    private let overrides: ConfigOverrides

    /// Loads and checks. The file is `path` (`--config`), else $MAMBAFORMER_CONFIG (both
    /// must exist), else `defaultPath` when it exists (installed hosts), else none.
    public static func load(path: String?, environment: [String: String] = ProcessInfo.processInfo.environment,
                            overrides: ConfigOverrides = ConfigOverrides(),
                            defaultPath: String = ClusterConfig.defaultPath) throws -> ClusterConfig {
        let chosen: String?
        if let path { chosen = path }
        else if let fromEnvironment = environment[pathVariable], !fromEnvironment.isEmpty { chosen = fromEnvironment }
        else { chosen = FileManager.default.fileExists(atPath: defaultPath) ? defaultPath : nil }
        let file = try chosen.map { try ConfigFile.load(path: $0) }
        return try ClusterConfig(file: file, environment: environment, overrides: overrides)
    }

    public init(file: ConfigFile?, environment: [String: String], overrides: ConfigOverrides) throws {
        self.file = file
        self.environment = environment
        self.overrides = overrides
        var problems = file?.problems ?? []
        problems += Self.environmentProblems(environment)
        for (path, entry) in overrides.values.sorted(by: { $0.key < $1.key }) {
            let origin = ConfigOrigin.flag(entry.flag)
            guard let setting = Schema.setting(path) else {
                problems.append(.init(origin: origin, key: path, kind: .unknownKey(suggestion: nil)))
                continue
            }
            if let kind = setting.type.check(entry.value) { problems.append(.init(origin: origin, key: path, kind: kind)) }
        }
        if !problems.isEmpty { throw ClusterConfigError.invalid(problems) }
    }

    private static func environmentProblems(_ environment: [String: String]) -> [ConfigProblem] {
        var problems: [ConfigProblem] = []
        let known = Dictionary(uniqueKeysWithValues: Schema.settings.map { ($0.environmentName, $0) })
        let sectionPrefixes = ["ROUTER_", "GATEWAY_", "EXPERT_", "SECURITY_", "LIMITS_", "AUTOSCALE_", "AUDIT_"].map { "MAMBAFORMER_" + $0 }
        for (name, text) in environment.sorted(by: { $0.key < $1.key }) where name.hasPrefix("MAMBAFORMER_") {
            guard let setting = known[name] else {
                // MAMBAFORMER_CONFIG, MAMBAFORMER_LOG_LEVEL, ... are not settings; a name shaped
                // like a setting but unknown is a typo that would otherwise be silently ignored.
                if sectionPrefixes.contains(where: name.hasPrefix) {
                    problems.append(.init(origin: .environment(name), key: name, kind: .unknownKey(suggestion: nil)))
                }
                continue
            }
            let origin = ConfigOrigin.environment(name)
            guard let value = setting.type.parse(environment: text) else {
                problems.append(.init(origin: origin, key: setting.path,
                                      kind: .wrongType(expected: setting.type.expected, got: "\"\(text)\"")))
                continue
            }
            if let kind = setting.type.check(value) { problems.append(.init(origin: origin, key: setting.path, kind: kind)) }
        }
        return problems
    }

    // MARK: Resolution

    /// The winning value of a setting and where it came from. For `expert.*` settings and a
    /// `pool`, the pool's own section ([expert.emamba]) beats [expert] within each layer.
    public func resolve(_ path: String, pool: String? = nil) -> (value: ConfigValue, origin: ConfigOrigin) {
        guard let setting = Schema.setting(path) else {
            return (.string(""), .builtInDefault)   // programming error; the schema lists every key used
        }
        if let o = overrides.values[path] { return (o.value, .flag(o.flag)) }
        var candidates: [Setting] = []
        if let pool, Schema.pooledSections.contains(setting.section),
           let specific = Schema.setting("\(setting.section).\(pool).\(setting.key)") {
            candidates.append(specific)
        }
        candidates.append(setting)
        for c in candidates {
            if let text = environment[c.environmentName], let v = c.type.parse(environment: text) {
                return (v, .environment(c.environmentName))
            }
        }
        for c in candidates {
            if let entry = file?.entries[c.path] { return (entry.value, .file(path: file?.path ?? "", line: entry.line)) }
        }
        return (setting.defaultValue, .builtInDefault)
    }

    public func string(_ path: String, pool: String? = nil) -> String {
        if case .string(let s) = resolve(path, pool: pool).value { return s }
        return ""
    }
    public func int(_ path: String, pool: String? = nil) -> Int {
        if case .int(let i) = resolve(path, pool: pool).value { return i }
        return 0
    }
    public func bool(_ path: String, pool: String? = nil) -> Bool {
        if case .bool(let b) = resolve(path, pool: pool).value { return b }
        return false
    }
    /// A list setting's values (a single value is a list of one).
    public func strings(_ path: String, pool: String? = nil) -> [String] {
        switch resolve(path, pool: pool).value {
        case .list(let items): return items.compactMap { if case .string(let s) = $0 { return s } else { return nil } }
        case .string(let s): return [s]
        default: return []
        }
    }
    /// "" means none for optional settings (paths, metrics addresses).
    public func optionalString(_ path: String, pool: String? = nil) -> String? {
        let s = string(path, pool: pool)
        return s.isEmpty ? nil : s
    }
    public func optionalPath(_ path: String) -> String? { optionalString(path) }
    /// "security.router_secret_key (/etc/mambaformer/cluster.toml:12)": for errors about a value's content.
    public func describe(_ path: String, pool: String? = nil) -> String {
        "\(path) (\(resolve(path, pool: pool).origin))"
    }

    // MARK: Typed views, one per node

    public var router: RouterSettings {
        RouterSettings(
            frontend: string("router.frontend"), backend: string("router.backend"), model: string("router.model"),
            gate: string("router.gate"), spanTokens: int("router.span_tokens"), firstSpanTokens: int("router.first_span_tokens"),
            heartbeatMs: int("router.heartbeat_ms"),
            drainTimeoutMs: int("router.drain_timeout_ms"), logLevel: string("router.log_level"),
            maxRequests: int("limits.max_requests"), maxQueuedSpans: int("limits.max_queued_spans"),
            fallbackOnOverload: bool("limits.fallback_on_overload"), maxPromptTokens: int("limits.max_prompt_tokens"))
    }

    public var gateway: GatewaySettings {
        let (host, port) = SettingType.splitHostPort(string("gateway.listen")) ?? ("127.0.0.1", 8080)
        return GatewaySettings(
            host: host, port: port, routers: strings("gateway.router"), deadlineMs: int("gateway.deadline_ms"),
            spanTokens: int("gateway.span_tokens"), readTimeoutMs: int("gateway.read_timeout_ms"),
            logLevel: string("gateway.log_level"), maxConcurrent: int("limits.max_concurrent"), maxTokens: int("limits.max_tokens"),
            maxBodyBytes: int("limits.max_body_bytes"), maxPromptBytes: int("limits.max_prompt_bytes"),
            authTokensFile: optionalPath("security.auth_tokens_file"), metricsAuth: bool("gateway.metrics_auth"),
            allowUnauthenticated: bool("security.allow_unauthenticated"),
            authFailuresPerMinute: int("security.auth_failures_per_minute"),
            clients: file?.clients ?? [],
            tlsCert: optionalPath("gateway.tls_cert"), tlsKey: optionalPath("gateway.tls_key"),
            tlsClientCA: optionalPath("gateway.tls_client_ca"), tlsRequireClientCert: bool("gateway.tls_require_client_cert"),
            allowPlaintextHTTP: bool("security.allow_plaintext_http"),
            audit: AuditSettings(path: optionalPath("audit.path"), hmacKeyFile: string("audit.hmac_key_file"),
                                 rotateBytes: int("audit.rotate_bytes"), headIntervalS: int("audit.head_interval_s"),
                                 queue: int("audit.queue"), includeText: bool("security.allow_audit_text"),
                                 allowUnaudited: bool("security.allow_unaudited_answers")))
    }

    public func expert(pool: String) -> ExpertSettings {
        ExpertSettings(
            pool: pool, routers: strings("expert.router", pool: pool), model: string("expert.model", pool: pool),
            threads: int("expert.threads", pool: pool), weights: string("expert.weights", pool: pool), capacity: int("expert.capacity", pool: pool),
            maxSessions: int("expert.max_sessions", pool: pool), heartbeatMs: int("expert.heartbeat_ms", pool: pool),
            ignoreEOS: bool("expert.ignore_eos", pool: pool), logLevel: string("expert.log_level", pool: pool),
            maxPromptTokens: int("limits.max_prompt_tokens"))
    }

    /// An expert's Prometheus address, nil when off. From the file or the environment under
    /// systemd (`--instance POOL-N`), the port is a base and replica N adds N to it, so one
    /// setting serves every replica of a host; a `--metrics` flag is taken as given.
    public func expertMetricsAddress(pool: String, instance: String?) -> String? {
        guard let address = optionalString("expert.metrics", pool: pool) else { return nil }
        if case .flag = resolve("expert.metrics", pool: pool).origin { return address }
        guard let number = instance.flatMap(ExpertInstance.init)?.number,
              let (host, port) = SettingType.splitHostPort(address), port != 0
        else { return address }
        return "\(host):\(port + number)"
    }

    /// One pool's autoscaling settings ([autoscale], then [autoscale.POOL] within each layer).
    public func autoscale(pool: String) -> AutoscalePoolSettings {
        AutoscalePoolSettings(
            minReplicas: int("autoscale.min_replicas", pool: pool), maxReplicas: int("autoscale.max_replicas", pool: pool),
            targetOngoingSpans: int("autoscale.target_ongoing_spans", pool: pool),
            upscaleDelayS: int("autoscale.upscale_delay_s", pool: pool), downscaleDelayS: int("autoscale.downscale_delay_s", pool: pool),
            lookBackS: int("autoscale.look_back_s", pool: pool), maxStep: int("autoscale.max_step", pool: pool))
    }

    public var security: SecuritySettings {
        SecuritySettings(
            curve: bool("security.curve"), routerPublicKeys: strings("security.router_public_key"),
            routerSecretKey: string("security.router_secret_key"), allowedKeysDir: optionalPath("security.allowed_keys_dir"),
            gatewayKeysDir: string("security.gateway_keys_dir"), expertKeysDir: string("security.expert_keys_dir"),
            gatewaySecretKey: string("security.gateway_secret_key"), expertSecretKey: string("security.expert_secret_key"),
            authTokensFile: optionalPath("security.auth_tokens_file"),
            allowPlaintextWire: bool("security.allow_plaintext_wire"))
    }
}

public struct RouterSettings: Equatable, Sendable {
    public var frontend: String
    public var backend: String
    public var model: String
    public var gate: String
    public var spanTokens: Int
    public var firstSpanTokens: Int
    public var heartbeatMs: Int
    public var drainTimeoutMs: Int
    public var logLevel: String
    public var maxRequests: Int
    public var maxQueuedSpans: Int
    public var fallbackOnOverload: Bool
    public var maxPromptTokens: Int
}

public struct GatewaySettings: Equatable, Sendable {
    public var host: String
    public var port: Int
    /// Every router's frontend endpoint.
    public var routers: [String]
    public var deadlineMs: Int
    public var spanTokens: Int
    public var readTimeoutMs: Int
    public var logLevel: String
    public var maxConcurrent: Int
    public var maxTokens: Int
    public var maxBodyBytes: Int
    public var maxPromptBytes: Int
    public var authTokensFile: String?
    public var metricsAuth: Bool
    public var allowUnauthenticated: Bool
    public var authFailuresPerMinute: Int
    /// `[[clients]]`: named clients' limits (only from the file).
    public var clients: [ClientLimits]
    public var tlsCert: String?
    public var tlsKey: String?
    public var tlsClientCA: String?
    public var tlsRequireClientCert: Bool
    public var allowPlaintextHTTP: Bool
    public var audit: AuditSettings
}

public struct ExpertSettings: Equatable, Sendable {
    public var pool: String
    /// Every router's backend endpoint.
    public var routers: [String]
    public var model: String
    public var threads: Int
    /// auto, f32, bf16, int8 or w8a8 (Engine.WeightFormat).
    public var weights: String
    public var capacity: Int
    public var maxSessions: Int
    public var heartbeatMs: Int
    public var ignoreEOS: Bool
    public var logLevel: String
    public var maxPromptTokens: Int
}

public struct AutoscalePoolSettings: Equatable, Sendable {
    public var minReplicas: Int
    public var maxReplicas: Int
    public var targetOngoingSpans: Int
    public var upscaleDelayS: Int
    public var downscaleDelayS: Int
    public var lookBackS: Int
    public var maxStep: Int
}

public struct SecuritySettings: Equatable, Sendable {
    public var curve: Bool
    /// One key for every router, or one per router (in the order of the endpoints).
    public var routerPublicKeys: [String]
    public var routerSecretKey: String
    /// Deprecated single allow-list for both roles; nil when unset.
    public var allowedKeysDir: String?
    public var gatewayKeysDir: String
    public var expertKeysDir: String
    public var gatewaySecretKey: String
    public var expertSecretKey: String
    public var authTokensFile: String?
    public var allowPlaintextWire: Bool
}

/// A systemd instance name of the expert template: `emamba-3` → pool `emamba`, replica `emamba-3`.
public struct ExpertInstance: Equatable, Sendable {
    public let pool: String
    public let replicaId: String
    /// The number after the pool (`3`), when it is one (what `mambaformer scale` manages).
    public let number: Int?

    public init?(_ name: String) {
        guard let dash = name.firstIndex(of: "-") else { return nil }
        let pool = String(name[..<dash])
        let suffix = name[name.index(after: dash)...]
        guard Schema.pools.contains(pool), !suffix.isEmpty,
              suffix.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ".") })
        else { return nil }
        self.pool = pool
        self.replicaId = name
        self.number = Int(suffix)
    }

    /// The replica id an expert announces when `--replica-id` does not name one: stable
    /// across restarts (the router binds an id to the key that first registered it, and keys
    /// per-replica statistics by it) and distinct across hosts, whose systemd instances are
    /// all numbered from 1: `emamba-3@host` for an instance, `emamba@host` otherwise.
    public static func defaultReplicaId(pool: String, instance: ExpertInstance?, host: String) -> String {
        let shortHost = host.split(separator: ".").first.map(String.init) ?? ""
        let base = instance?.replicaId ?? pool
        return shortHost.isEmpty ? base : "\(base)@\(shortHost)"
    }
}

/// The gateway's audit trail ([audit] and its two `security.allow_*` opt-outs).
public struct AuditSettings: Equatable, Sendable {
    /// nil: no audit log.
    public var path: String?
    public var hmacKeyFile: String
    public var rotateBytes: Int
    public var headIntervalS: Int
    public var queue: Int
    public var includeText: Bool
    public var allowUnaudited: Bool
}
