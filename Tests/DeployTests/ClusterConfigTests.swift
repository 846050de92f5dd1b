@testable import ClusterConfig
import Foundation
import XCTest

/// The configuration file, its precedence (flags > environment > file > defaults) and every
/// kind of refusal, each naming the file and line (or the variable / flag) and the reason.
final class ClusterConfigTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("mf-config-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    func write(_ text: String, name: String = "cluster.toml") throws -> String {
        let url = dir.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    func load(_ text: String?, env: [String: String] = [:], flags: ConfigOverrides = ConfigOverrides()) throws -> ClusterConfig {
        let path = try text.map { try write($0) }
        return try ClusterConfig.load(path: path, environment: env, overrides: flags,
                                      defaultPath: dir.appendingPathComponent("absent.toml").path)
    }

    func problems(_ text: String?, env: [String: String] = [:], flags: ConfigOverrides = ConfigOverrides()) -> [ConfigProblem] {
        do {
            _ = try load(text, env: env, flags: flags)
            XCTFail("configuration was accepted")
            return []
        } catch let error as ClusterConfigError {
            return error.problems
        } catch {
            XCTFail("unexpected error \(error)")
            return []
        }
    }

    // MARK: Precedence

    /// The schema is the one home of every default: `--help` shows it from there, and the
    /// nodes' option structs start from it.
    func testHelpShowsTheSchemasDefaultKeyAndVariable() throws {
        let span = try XCTUnwrap(Schema.setting("router.span_tokens"))
        XCTAssertEqual(span.flag, "--span-tokens")
        XCTAssertEqual(span.flagHelp, "Tokens per span (default 16; router.span_tokens in the file, MAMBAFORMER_ROUTER_SPAN_TOKENS)")
        XCTAssertTrue(try XCTUnwrap(Schema.setting("security.auth_tokens_file")).flagHelp.contains("(default none;"))
        for setting in Schema.settings { XCTAssertFalse(setting.help.isEmpty, "\(setting.path) has no help") }
        XCTAssertEqual(Schema.defaultInt("expert.capacity"), 8)
        XCTAssertEqual(Schema.defaultHostPort("gateway.listen").port, 8080)
        // A flag given without a name is reported under the setting's own flag.
        var flags = ConfigOverrides()
        flags.set("expert.capacity", 0)
        XCTAssertEqual(problems(nil, flags: flags).map(\.origin.description), ["flag --capacity"])
    }

    /// List values: a TOML array, a comma-separated variable, a repeated flag; one value alone
    /// is a list of one, so a setting can become a list without breaking a file.
    func testListValuesFromEverySource() throws {
        let endpoints = SettingType.list(.endpoint, maxCount: 3)
        let file = try ConfigFile(text: "[router]\nfrontend = [\"ipc:///a\", \"tcp://h:1\"]\n", path: "t.toml")
        XCTAssertEqual(file.problems.count, 1, "a scalar setting refuses a list")
        let node = try XCTUnwrap(try TOMLTableForTest.value("x = [\"ipc:///a\", \"tcp://h:1\"]"))
        let array = try XCTUnwrap(ConfigFile.value(of: node))
        XCTAssertEqual(array, ConfigValue.list([.string("ipc:///a"), .string("tcp://h:1")]))
        XCTAssertNil(endpoints.check(array))
        XCTAssertNil(endpoints.check(.string("ipc:///a")), "one value is a list of one")
        XCTAssertEqual(endpoints.parse(environment: "ipc:///a, tcp://h:1"), array)
        XCTAssertNotNil(endpoints.check(.list([.string("ipc:///a"), .string("http://h")])), "each element is checked")
        XCTAssertNotNil(endpoints.check(.list(Array(repeating: .string("ipc:///a"), count: 4))), "the count is bounded")
        XCTAssertNotNil(endpoints.check(.int(3)))
        var flags = ConfigOverrides()
        flags.set("router.frontend", [String]())
        XCTAssertNil(flags.values["router.frontend"], "a repeatable flag not given sets nothing")
    }

    func testDefaultsWithoutAnyFile() throws {
        let config = try load(nil)
        XCTAssertNil(config.file)
        XCTAssertEqual(config.router.frontend, "ipc:///run/mambaformer/frontend")
        XCTAssertEqual(config.gateway.routers, ["ipc:///run/mambaformer/frontend"])
        XCTAssertEqual(config.expert(pool: "emamba").routers, ["ipc:///run/mambaformer/backend"])
        XCTAssertFalse(config.security.allowPlaintextWire)
        XCTAssertEqual(config.router.spanTokens, 16)
        XCTAssertEqual(config.gateway.port, 8080)
        XCTAssertEqual(config.expert(pool: "et5").threads, 1)
        XCTAssertEqual(config.resolve("router.span_tokens").origin, .builtInDefault)
    }

    func testFlagBeatsEnvironmentBeatsFileBeatsDefault() throws {
        let text = """
            [router]
            span_tokens = 8
            heartbeat_ms = 700
            gate = "rule"
            """
        let env = ["MAMBAFORMER_ROUTER_SPAN_TOKENS": "12", "MAMBAFORMER_ROUTER_HEARTBEAT_MS": "900"]
        var flags = ConfigOverrides()
        flags.set("router.span_tokens", 4, flag: "--span-tokens")
        let config = try load(text, env: env, flags: flags)
        let path = config.file!.path
        XCTAssertEqual(config.router.spanTokens, 4)
        XCTAssertEqual(config.resolve("router.span_tokens").origin, .flag("--span-tokens"))
        XCTAssertEqual(config.router.heartbeatMs, 900)
        XCTAssertEqual(config.resolve("router.heartbeat_ms").origin, .environment("MAMBAFORMER_ROUTER_HEARTBEAT_MS"))
        XCTAssertEqual(config.router.gate, "rule")
        XCTAssertEqual(config.resolve("router.gate").origin, .file(path: path, line: 4))
        XCTAssertEqual(config.router.backend, "ipc:///run/mambaformer/backend")
        XCTAssertEqual(config.resolve("router.backend").origin, .builtInDefault)
    }

    func testUnsetFlagsLetTheFileThrough() throws {
        var flags = ConfigOverrides()
        flags.set("router.span_tokens", nil as Int?, flag: "--span-tokens")
        let config = try load("[router]\nspan_tokens = 8\n", flags: flags)
        XCTAssertEqual(config.router.spanTokens, 8)
    }

    func testPoolSectionOverridesExpertSectionWithinEachLayer() throws {
        let text = """
            [expert]
            threads = 2
            capacity = 4

            [expert.et5]
            threads = 3
            """
        var config = try load(text)
        XCTAssertEqual(config.expert(pool: "et5").threads, 3)
        XCTAssertEqual(config.expert(pool: "et5").capacity, 4, "not in [expert.et5]: from [expert]")
        XCTAssertEqual(config.expert(pool: "emamba").threads, 2)
        // The generic environment variable beats the pool's file section (environment > file)...
        config = try load(text, env: ["MAMBAFORMER_EXPERT_THREADS": "5"])
        XCTAssertEqual(config.expert(pool: "et5").threads, 5)
        // ...and the pool's variable beats the generic one.
        config = try load(text, env: ["MAMBAFORMER_EXPERT_THREADS": "5", "MAMBAFORMER_EXPERT_ET5_THREADS": "6"])
        XCTAssertEqual(config.expert(pool: "et5").threads, 6)
        XCTAssertEqual(config.expert(pool: "emamba").threads, 5)
    }

    func testConfigPathFromEnvironmentAndDefaultPath() throws {
        let path = try write("[gateway]\nlisten = \"0.0.0.0:9000\"\n", name: "other.toml")
        var config = try ClusterConfig.load(path: nil, environment: ["MAMBAFORMER_CONFIG": path],
                                            defaultPath: dir.appendingPathComponent("absent.toml").path)
        XCTAssertEqual(config.gateway.host, "0.0.0.0")
        XCTAssertEqual(config.gateway.port, 9000)
        config = try ClusterConfig.load(path: nil, environment: [:], defaultPath: path)
        XCTAssertEqual(config.file?.path, path)
    }

    func testSkeletonInDeployFolderIsValid() throws {
        let skeleton = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Deploy/cluster.toml")
        let config = try ClusterConfig.load(path: skeleton.path, environment: [:])
        XCTAssertEqual(config.router.model, "/var/lib/mambaformer/model")
        XCTAssertEqual(config.expert(pool: "emamba").model, "/var/lib/mambaformer/model")
    }

    // MARK: Refusals

    func testMissingFileIsRefused() {
        let path = dir.appendingPathComponent("nope.toml").path
        XCTAssertThrowsError(try ClusterConfig.load(path: path, environment: [:])) { error in
            XCTAssertEqual(error as? ClusterConfigError, .fileMissing(path: path))
            XCTAssertTrue("\(error)".contains(path))
        }
        XCTAssertThrowsError(try ClusterConfig.load(path: nil, environment: ["MAMBAFORMER_CONFIG": path])) { error in
            XCTAssertEqual(error as? ClusterConfigError, .fileMissing(path: path))
        }
    }

    func testSyntaxErrorNamesFileAndLine() throws {
        let path = try write("[router]\nspan_tokens = 8\nfrontend = \"tcp://x:1\n")
        XCTAssertThrowsError(try ClusterConfig.load(path: path, environment: [:])) { error in
            guard case .syntax(let p, let line, _, _)? = error as? ClusterConfigError else {
                return XCTFail("\(error)")
            }
            XCTAssertEqual(p, path)
            XCTAssertEqual(line, 3)
            XCTAssertTrue("\(error)".hasPrefix("\(path):3:"), "\(error)")
        }
    }

    func testUnknownKeyWithLineAndSuggestion() throws {
        let found = problems("""
            # comment
            [router]
            span_tokens = 8
            span_tokenz = 9
            """)
        XCTAssertEqual(found.count, 1)
        XCTAssertEqual(found.first?.key, "router.span_tokenz")
        XCTAssertEqual(found.first?.kind, .unknownKey(suggestion: "router.span_tokens"))
        guard case .file(_, let line)? = found.first?.origin else { return XCTFail() }
        XCTAssertEqual(line, 4)
        XCTAssertTrue(found.first!.description.contains("cluster.toml:4: router.span_tokenz: unknown setting (did you mean router.span_tokens?)"),
                      found.first!.description)
    }

    func testUnknownSectionAndTopLevelKey() {
        let found = problems("""
            model = "x"
            [routr]
            frontend = "tcp://127.0.0.1:1"
            """)
        XCTAssertEqual(found.map(\.key), ["model", "routr"])
        XCTAssertEqual(found.last?.kind, .unknownKey(suggestion: "[router]"))
        XCTAssertEqual(found.map { if case .file(_, let l) = $0.origin { return l } else { return -1 } }, [1, 2])
    }

    func testWrongTypeWithLine() {
        let found = problems("""
            [limits]
            max_tokens = 512
            fallback_on_overload = "yes"
            [expert.emamba]
            threads = 1.5
            """)
        XCTAssertEqual(found.count, 2)
        XCTAssertEqual(found[0].key, "limits.fallback_on_overload")
        XCTAssertEqual(found[0].kind, .wrongType(expected: "a boolean", got: "a string (\"yes\")"))
        XCTAssertEqual(found[1].key, "expert.emamba.threads")
        guard case .file(_, let line) = found[1].origin else { return XCTFail() }
        XCTAssertEqual(line, 5)
    }

    func testOutOfRangeAndInvalidValues() {
        let found = problems("""
            [router]
            span_tokens = 0
            gate = "coin"
            backend = "udp://host:1"
            [gateway]
            listen = "0.0.0.0:70000"
            """)
        XCTAssertEqual(found.map(\.key), ["router.span_tokens", "router.gate", "router.backend", "gateway.listen"])
        XCTAssertEqual(found[0].kind, .outOfRange(value: "0", allowed: "1...256"))
        XCTAssertEqual(found[1].kind, .outOfRange(value: "\"coin\"", allowed: "auto, trained, rule, alternate"))
        if case .invalidValue = found[2].kind {} else { XCTFail("\(found[2])") }
        XCTAssertEqual(found[3].kind, .outOfRange(value: "port 70000", allowed: "0...65535"))
    }

    func testEnvironmentProblemsNameTheVariable() {
        let found = problems(nil, env: ["MAMBAFORMER_EXPERT_THREADS": "many", "MAMBAFORMER_LIMITS_MAX_TOKENS": "0",
                                        "MAMBAFORMER_ROUTER_SPAN_TOKNS": "4", "MAMBAFORMER_LOG_LEVEL": "debug"])
        XCTAssertEqual(found.count, 3, "\(found)")
        XCTAssertTrue(found.contains { $0.origin == .environment("MAMBAFORMER_EXPERT_THREADS") && $0.kind == .wrongType(expected: "an integer", got: "\"many\"") })
        XCTAssertTrue(found.contains { $0.origin == .environment("MAMBAFORMER_LIMITS_MAX_TOKENS") && $0.kind == .outOfRange(value: "0", allowed: "1...65536") })
        XCTAssertTrue(found.contains { $0.origin == .environment("MAMBAFORMER_ROUTER_SPAN_TOKNS") })
    }

    func testFlagOutOfRangeIsRefused() {
        var flags = ConfigOverrides()
        flags.set("expert.capacity", 0, flag: "--capacity")
        let found = problems(nil, flags: flags)
        XCTAssertEqual(found, [ConfigProblem(origin: .flag("--capacity"), key: "expert.capacity",
                                             kind: .outOfRange(value: "0", allowed: "1...256"))])
    }

    // MARK: Expert instances

    func testExpertMetricsPortIsABasePerInstance() throws {
        let text = """
            [router]
            metrics = "127.0.0.1:9100"
            [expert.emamba]
            metrics = "0.0.0.0:9200"
            [expert.et5]
            metrics = "0.0.0.0:9300"
            """
        let config = try load(text)
        XCTAssertEqual(config.optionalString("router.metrics"), "127.0.0.1:9100")
        XCTAssertEqual(config.expertMetricsAddress(pool: "emamba", instance: "emamba-3"), "0.0.0.0:9203")
        XCTAssertEqual(config.expertMetricsAddress(pool: "et5", instance: "et5-1"), "0.0.0.0:9301")
        XCTAssertEqual(config.expertMetricsAddress(pool: "et5", instance: nil), "0.0.0.0:9300")
        var flags = ConfigOverrides()
        flags.set("expert.metrics", "127.0.0.1:9999", flag: "--metrics")
        XCTAssertEqual(try load(text, flags: flags).expertMetricsAddress(pool: "et5", instance: "et5-1"), "127.0.0.1:9999")
        XCTAssertNil(try load(nil).expertMetricsAddress(pool: "et5", instance: "et5-1"), "off by default")
        XCTAssertEqual(problems("[router]\nmetrics = \"nohost\"\n").first?.key, "router.metrics")
    }

    func testExpertInstanceNames() {
        XCTAssertEqual(ExpertInstance("emamba-3")?.pool, "emamba")
        XCTAssertEqual(ExpertInstance("emamba-3")?.replicaId, "emamba-3")
        XCTAssertEqual(ExpertInstance("emamba-3")?.number, 3)
        XCTAssertEqual(ExpertInstance("et5-a")?.number, nil)
        XCTAssertNil(ExpertInstance("gpt-1"))
        XCTAssertNil(ExpertInstance("et5-"))
        XCTAssertNil(ExpertInstance("emamba"))
        XCTAssertNil(ExpertInstance("et5-1/../x"))
    }

    /// Replica ids survive restarts (no pid in them) and differ between hosts.
    func testDefaultReplicaIdsAreStableAndNameTheHost() {
        XCTAssertEqual(ExpertInstance.defaultReplicaId(pool: "emamba", instance: ExpertInstance("emamba-3"), host: "ward-a.example.org"),
                       "emamba-3@ward-a")
        XCTAssertEqual(ExpertInstance.defaultReplicaId(pool: "et5", instance: nil, host: "ward-b"), "et5@ward-b")
        XCTAssertEqual(ExpertInstance.defaultReplicaId(pool: "et5", instance: nil, host: ""), "et5")
    }
}

import TOMLKit

/// One TOML value parsed from `key = value` text, for the value-mapping tests.
enum TOMLTableForTest {
    static func value(_ text: String) throws -> TOMLValueConvertible? {
        try TOMLTable(string: text)["x"]
    }
}
