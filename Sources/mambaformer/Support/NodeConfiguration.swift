import ArgumentParser
import ClusterConfig
import ExpertNode
import Foundation
import Gateway
import RouterNode
import Wire

/// `--config PATH`, shared by router, gateway, expert and up.
struct ConfigFileOption: ParsableArguments {
    @Option(name: .customLong("config"),
            help: "Cluster configuration file (default: $MAMBAFORMER_CONFIG, else /etc/mambaformer/cluster.toml when present).")
    var path: String?
}

/// A value of the configuration is fine as a value but unusable (a key file that cannot be
/// read, an empty allow-list): named with the setting and where it was set.
struct NodeConfigError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// From the cluster configuration (file + environment + the flags a command was given) to
/// each node's options. The commands only gather their flags into `ConfigOverrides` and call
/// these, so that every node reads the same file the same way.
enum NodeConfiguration {
    static func load(_ option: ConfigFileOption, _ overrides: ConfigOverrides) throws -> ClusterConfig {
        try ClusterConfig.load(path: option.path, overrides: overrides)
    }

    /// The log level to bootstrap with: nil when nothing set it, so MAMBAFORMER_LOG_LEVEL still applies.
    static func logLevel(_ config: ClusterConfig, _ key: String, pool: String? = nil) -> String? {
        let resolved = config.resolve(key, pool: pool)
        guard resolved.origin != .builtInDefault, case .string(let level) = resolved.value else { return nil }
        return level
    }

    /// Secure by default: plain text over TCP (CURVE off) lets anyone who reaches the port
    /// submit requests or register as an expert and read prompts. Refused unless the operator
    /// opts out with `security.allow_plaintext_wire`.
    static func checkWire(_ config: ClusterConfig, _ setting: String, pool: String? = nil) throws {
        // A list setting (autoscale.routers) is checked endpoint by endpoint.
        guard let endpoint = config.strings(setting, pool: pool).first(where: { $0.hasPrefix("tcp://") }),
              !config.security.curve, !config.security.allowPlaintextWire else { return }
        throw NodeConfigError("""
            \(config.describe(setting, pool: pool)) is \(endpoint) with CURVE off: anyone who reaches that port could \
            submit requests or register as an expert and read patient text. Set security.curve = true with keys \
            (README, "Configuration"), use ipc:// endpoints on one host (the default, \(Schema.defaultFrontend)), \
            or set security.allow_plaintext_wire = true on a network you trust
            """)
    }

    /// The folder of an ipc:// endpoint the router binds: created (mode 0750, like systemd's
    /// RuntimeDirectory) when missing, so only the service's user and group can reach it.
    static func prepareIPC(_ config: ClusterConfig, _ setting: String) throws {
        let endpoint = config.string(setting)
        guard endpoint.hasPrefix("ipc://") else { return }
        let folder = URL(fileURLWithPath: String(endpoint.dropFirst("ipc://".count))).deletingLastPathComponent().path
        guard !FileManager.default.fileExists(atPath: folder) else { return }
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o750])
        } catch {
            throw NodeConfigError("\(config.describe(setting)): cannot create \(folder) for \(endpoint) (\(error)): "
                                  + "run under systemd (RuntimeDirectory=mambaformer), create it, or use an ipc:// path you own")
        }
    }

    static func routerOptions(_ config: ClusterConfig) throws -> RouterNode.Options {
        let s = config.router
        for setting in ["router.frontend", "router.backend"] {
            try checkWire(config, setting)
            try prepareIPC(config, setting)
        }
        var options = RouterNode.Options()
        options.frontend = s.frontend
        options.backend = s.backend
        options.core.spanTokens = UInt32(s.spanTokens)
        options.core.firstSpanTokens = UInt32(s.firstSpanTokens)
        options.core.heartbeatIntervalMs = UInt64(s.heartbeatMs)
        options.core.maxQueuedSpansPerPool = s.maxQueuedSpans
        options.core.maxActiveRequests = s.maxRequests
        options.core.fallbackOnOverload = s.fallbackOnOverload
        options.core.maxPromptBytes = config.int("limits.max_prompt_bytes")
        options.core.maxPromptTokens = s.maxPromptTokens
        if config.security.curve { options.curve = try routerCurve(config) }
        return options
    }

    static func expertOptions(_ config: ClusterConfig, pool: PoolKind, replicaId: String, modelId: String) throws -> ExpertNode.Options {
        let s = config.expert(pool: "\(pool)")
        try checkWire(config, "expert.router", pool: "\(pool)")
        var options = ExpertNode.Options()
        options.routers = s.routers
        options.pool = pool
        options.replicaId = replicaId
        options.modelId = modelId
        options.capacity = s.capacity
        options.maxSessions = s.maxSessions
        options.maxPromptTokens = s.maxPromptTokens
        options.maxPromptBytes = config.int("limits.max_prompt_bytes")
        options.heartbeatIntervalMs = UInt64(s.heartbeatMs)
        options.ignoreEOS = s.ignoreEOS
        if config.security.curve {
            options.curves = try clientCurves(config, secretKeySetting: "security.expert_secret_key", routers: s.routers.count)
        }
        return options
    }

    static func gatewayConfig(_ config: ClusterConfig) throws -> GatewayConfig {
        let s = config.gateway
        try checkWire(config, "gateway.router")
        var g = GatewayConfig()
        g.host = s.host
        g.port = s.port
        g.maxConcurrent = s.maxConcurrent
        g.maxTokens = s.maxTokens
        g.defaultMaxTokens = min(g.defaultMaxTokens, s.maxTokens)
        g.maxBodyBytes = s.maxBodyBytes
        g.maxPromptBytes = s.maxPromptBytes
        g.metricsAuth = s.metricsAuth
        g.allowUnauthenticated = s.allowUnauthenticated
        g.authFailuresPerMinute = s.authFailuresPerMinute
        g.defaultDeadlineMs = s.deadlineMs
        g.maxDeadlineMs = max(g.maxDeadlineMs, s.deadlineMs)
        g.spanTokens = UInt32(s.spanTokens)
        g.readTimeoutMs = s.readTimeoutMs
        if let path = s.authTokensFile {
            let named = try GatewayConfig.loadAuthTokens(path: path)
            g.authTokens = Set(named.keys)
            g.clientNames = named
            g.authTokensFile = path
        }
        g.clients = s.clients
        g.tlsCert = s.tlsCert
        g.tlsKey = s.tlsKey
        g.tlsClientCA = s.tlsClientCA
        g.tlsRequireClientCert = s.tlsRequireClientCert
        g.allowPlaintextHTTP = s.allowPlaintextHTTP
        try g.validate()
        return g
    }

    /// A frontend client's CURVE settings (gateway, autoscaler), one per router in `routers`;
    /// nil with CURVE off.
    static func gatewayCurves(_ config: ClusterConfig, routers: Int) throws -> [CurveClientConfig]? {
        guard config.security.curve else { return nil }
        return try clientCurves(config, secretKeySetting: "security.gateway_secret_key", routers: routers)
    }

    // MARK: CURVE keys

    /// The router's key pair and its two allow-lists (see `routerAllowLists`).
    private static func routerCurve(_ config: ClusterConfig) throws -> RouterNode.Curve {
        let s = config.security
        let secret = try readKey(config, "security.router_secret_key", s.routerSecretKey, secret: true)
        let publicKey = try Keys.publicKey(fromSecret: secret)
        let lists = try routerAllowLists(config)
        return RouterNode.Curve(
            frontend: CurveServerConfig(publicKey: publicKey, secretKey: secret, allowedClientKeys: lists.gateways),
            backend: CurveServerConfig(publicKey: publicKey, secretKey: secret, allowedClientKeys: lists.experts))
    }

    /// Roles: every `*.pub` in `gateway_keys_dir` may submit requests on the frontend, every
    /// `*.pub` in `expert_keys_dir` may register on the backend; the deprecated
    /// `allowed_keys_dir` adds its keys to both. Read at start and on SIGHUP; a role with no
    /// key at all is refused (nobody could connect).
    static func routerAllowLists(_ config: ClusterConfig) throws -> (gateways: Set<String>, experts: Set<String>) {
        let s = config.security
        func keys(_ setting: String, _ dir: String?) throws -> Set<String> {
            guard let dir, let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [] }
            var found = Set<String>()
            for name in names.sorted() where name.hasSuffix(".pub") {
                found.insert(try readKey(config, setting, dir + "/" + name))
            }
            return found
        }
        let shared = try keys("security.allowed_keys_dir", s.allowedKeysDir)
        let gateways = try keys("security.gateway_keys_dir", s.gatewayKeysDir).union(shared)
        let experts = try keys("security.expert_keys_dir", s.expertKeysDir).union(shared)
        for (role, setting, found) in [("gateway", "security.gateway_keys_dir", gateways), ("expert", "security.expert_keys_dir", experts)]
        where found.isEmpty {
            throw NodeConfigError("\(config.describe(setting)): no *.pub key for the \(role) role in \(config.string(setting)): "
                                  + "with CURVE on, no \(role) could connect (copy each \(role) host's .pub there; "
                                  + "keys from a 1.0 install's keys/allowed go in both folders)")
        }
        return (gateways, experts)
    }

    /// The client's key pair with each router's public key: one key for all routers, or one
    /// per router in the order of the endpoints (routers on several hosts, a key per host).
    private static func clientCurves(_ config: ClusterConfig, secretKeySetting: String, routers: Int) throws -> [CurveClientConfig] {
        let secret = try readKey(config, secretKeySetting, config.string(secretKeySetting), secret: true)
        let paths = config.security.routerPublicKeys
        guard paths.count == 1 || paths.count == routers else {
            throw NodeConfigError("\(config.describe("security.router_public_key")) lists \(paths.count) keys for \(routers) routers: "
                                  + "give one key for every router, or one per router in the order of the endpoints")
        }
        let serverKeys = try paths.map { try readKey(config, "security.router_public_key", $0) }
        let publicKey = try Keys.publicKey(fromSecret: secret)
        return (0..<routers).map { i in
            CurveClientConfig(publicKey: publicKey, secretKey: secret, serverKey: serverKeys[serverKeys.count == 1 ? 0 : i])
        }
    }

    private static func readKey(_ config: ClusterConfig, _ setting: String, _ path: String, secret: Bool = false) throws -> String {
        do { return try secret ? Keys.readSecretKey(atPath: path) : Keys.readKey(atPath: path) } catch {
            throw NodeConfigError("\(config.describe(setting)): \(error)")
        }
    }
}

/// Expert pool names on the command line and in systemd instance names.
extension PoolKind {
    init?(name: String) {
        switch name {
        case "emamba": self = .emamba
        case "et5": self = .et5
        default: return nil
        }
    }
}

extension ArgumentHelp {
    /// A flag's help from the schema (what it does, its default, its file key and variable),
    /// so that no command repeats a default: `@Option(help: .setting("router.span_tokens"))`.
    static func setting(_ path: String) -> ArgumentHelp {
        guard let setting = Schema.setting(path) else { preconditionFailure("\(path) is not in Schema.settings") }
        return ArgumentHelp(setting.flagHelp)
    }
}
