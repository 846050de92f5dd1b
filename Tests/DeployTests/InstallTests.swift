import Foundation
import TestCommon
import XCTest

/// scripts/install.sh into a temporary root (DESTDIR), the installed tree, idempotence,
/// uninstall, and `systemd-analyze verify` on the installed units.
final class InstallTests: XCTestCase {
    static var repositoryRoot: URL { TestPaths.repositoryRoot }
    static var binary: URL { TestPaths.binary }

    var root: URL!

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("mf-install-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: root) }

    typealias Run = CommandRun

    @discardableResult
    static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> Run {
        try runCommand(executable, arguments, environment: environment)
    }

    func install(_ arguments: [String] = []) throws -> Run {
        try Self.run("/bin/bash", [Self.repositoryRoot.appendingPathComponent("scripts/install.sh").path] + arguments,
                     environment: ["DESTDIR": root.path, "BINARY": Self.binary.path])
    }

    func path(_ p: String) -> String { root.path + p }
    func exists(_ p: String) -> Bool { FileManager.default.fileExists(atPath: path(p)) }
    func mode(_ p: String) -> Int { ((try? FileManager.default.attributesOfItem(atPath: path(p)))?[.posixPermissions] as? Int) ?? -1 }
    func read(_ p: String) -> String { (try? String(contentsOfFile: path(p), encoding: .utf8)) ?? "" }

    /// Every file under the root with its size and mode: two installs must give the same.
    func tree() -> [String] {
        let e = FileManager.default.enumerator(atPath: root.path)
        var out: [String] = []
        while let f = e?.nextObject() as? String {
            let a = try? FileManager.default.attributesOfItem(atPath: path("/" + f))
            out.append("\(f) \(a?[.size] ?? 0) \(a?[.posixPermissions] ?? 0)")
        }
        return out.sorted()
    }

    static let units = ["mambaformer-router.service", "mambaformer-router@.service", "mambaformer-gateway.service",
                        "mambaformer-expert@.service", "mambaformer-autoscaler.service", "mambaformer.target"]
    static let polkitRule = "/etc/polkit-1/rules.d/50-mambaformer-autoscaler.rules"

    /// As root, with no binary built, install.sh refuses instead of compiling: a build runs
    /// every package's manifest and plug-in code, which must not run as root.
    func testNeverCompilesAsRoot() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root (CI runs as root)") }
        // A checkout without a .build folder: the script alone, in its usual place.
        let checkout = root.appendingPathComponent("checkout")
        try FileManager.default.createDirectory(at: checkout.appendingPathComponent("scripts"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: Self.repositoryRoot.appendingPathComponent("scripts/install.sh"),
                                        to: checkout.appendingPathComponent("scripts/install.sh"))
        let r = try Self.run("/bin/bash", [checkout.appendingPathComponent("scripts/install.sh").path],
                             environment: ["DESTDIR": root.appendingPathComponent("dest").path, "PATH": "/usr/bin:/bin"])
        XCTAssertEqual(r.status, 1, r.out + r.err)
        XCTAssertTrue(r.err.contains("does not compile as root"), r.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: root.appendingPathComponent("dest/usr/local/bin/mambaformer").path))
    }

    func testInstallIntoDestdirGivesTheWholeTree() throws {
        let r = try install()
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertEqual(mode("/usr/local/bin/mambaformer"), 0o755)
        for unit in Self.units {
            XCTAssertTrue(exists("/etc/systemd/system/\(unit)"), unit)
            XCTAssertEqual(mode("/etc/systemd/system/\(unit)"), 0o644, unit)
        }
        XCTAssertEqual(read("/etc/mambaformer/cluster.toml"),
                       try String(contentsOf: Self.repositoryRoot.appendingPathComponent("Deploy/cluster.toml"), encoding: .utf8))
        XCTAssertEqual(mode("/etc/mambaformer/cluster.toml"), 0o640)
        XCTAssertEqual(mode("/etc/mambaformer/keys"), 0o750)
        XCTAssertTrue(exists("/etc/mambaformer/keys/gateways"))
        XCTAssertTrue(exists("/etc/mambaformer/keys/experts"))
        XCTAssertTrue(exists("/var/lib/mambaformer/model/mambaformer.json"))
        for part in ["emamba", "et5"] {
            XCTAssertTrue(exists("/var/lib/mambaformer/model/\(part)/config.json"), part)
            XCTAssertTrue(exists("/var/lib/mambaformer/model/\(part)/model.safetensors"), part)
        }
        XCTAssertFalse(exists("/var/lib/mambaformer/model/emamba-train.log"), "only the checkpoint, not training logs")
        XCTAssertTrue(exists("/usr/local/share/doc/mambaformer/README.md"))
        // The autoscaler may start and stop expert units only (its polkit rule).
        XCTAssertEqual(mode(Self.polkitRule), 0o644)
        XCTAssertTrue(read(Self.polkitRule).contains("mambaformer-expert@"))
        let expert = read("/etc/systemd/system/mambaformer-expert@.service")
        XCTAssertTrue(expert.contains("ExecStart=/usr/local/bin/mambaformer expert --config /etc/mambaformer/cluster.toml --instance %i"))

        // The installed binary runs and accepts the installed configuration's syntax.
        let version = try Self.run(path("/usr/local/bin/mambaformer"), ["--version"])
        XCTAssertEqual(version.status, 0)
        XCTAssertTrue(version.out.hasPrefix("mambaformer "), version.out)
    }

    func testInstallIsIdempotentAndKeepsTheOperatorsConfig() throws {
        XCTAssertEqual(try install().status, 0)
        let first = tree()
        XCTAssertEqual(try install().status, 0)
        XCTAssertEqual(tree(), first, "a second install changes nothing")

        let edited = "[router]\nspan_tokens = 8\n"
        try edited.write(toFile: path("/etc/mambaformer/cluster.toml"), atomically: true, encoding: .utf8)
        XCTAssertEqual(try install().status, 0)
        XCTAssertEqual(read("/etc/mambaformer/cluster.toml"), edited)
    }

    func testPrefixIsWrittenIntoTheUnits() throws {
        let r = try Self.run("/bin/bash", [Self.repositoryRoot.appendingPathComponent("scripts/install.sh").path],
                             environment: ["DESTDIR": root.path, "BINARY": Self.binary.path, "PREFIX": "/opt/mf"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(exists("/opt/mf/bin/mambaformer"))
        let router = read("/etc/systemd/system/mambaformer-router.service")
        XCTAssertTrue(router.contains("ExecStart=/opt/mf/bin/mambaformer router"), router)
        XCTAssertFalse(router.contains("/usr/local"))
    }

    func testUninstallKeepsConfigAndPurgeRemovesIt() throws {
        XCTAssertEqual(try install().status, 0)
        XCTAssertEqual(try install(["--uninstall"]).status, 0)
        XCTAssertFalse(exists("/usr/local/bin/mambaformer"))
        for unit in Self.units { XCTAssertFalse(exists("/etc/systemd/system/\(unit)"), unit) }
        XCTAssertFalse(exists(Self.polkitRule))
        XCTAssertTrue(exists("/etc/mambaformer/cluster.toml"))
        XCTAssertTrue(exists("/var/lib/mambaformer/model/mambaformer.json"))
        XCTAssertEqual(try install(["--uninstall", "--purge"]).status, 0)
        XCTAssertFalse(exists("/etc/mambaformer"))
        XCTAssertFalse(exists("/var/lib/mambaformer"))
    }

    func testUnknownArgumentIsRefused() throws {
        let r = try install(["--frobnicate"])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.err.contains("unknown argument --frobnicate"), r.err)
    }

    // MARK: systemd-analyze verify

    /// `systemd-analyze verify` against the installed root. It exits 0 on unknown keys and bad
    /// values (only a warning), so stderr must be empty as well.
    func requireSystemdAnalyze() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze") else {
            throw XCTSkip("systemd-analyze is missing: install the `systemd` package (scripts/install-deps.sh does)")
        }
    }

    func verify(_ unitNames: [String]) throws -> Run {
        try requireSystemdAnalyze()
        let dir = path("/etc/systemd/system")
        return try Self.run("/usr/bin/systemd-analyze",
                            ["verify", "--man=no", "--recursive-errors=no", "--root=\(root.path)"] + unitNames.map { "\(dir)/\($0)" })
    }

    func testInstalledUnitsPassSystemdAnalyzeVerify() throws {
        XCTAssertEqual(try install().status, 0)
        // The template is verified through instances of both pools.
        let r = try verify(["mambaformer-router.service", "mambaformer-gateway.service", "mambaformer.target",
                            "mambaformer-expert@emamba-3.service", "mambaformer-expert@et5-1.service",
                            "mambaformer-autoscaler.service", "mambaformer-router@2.service"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertEqual(r.err.trimmingCharacters(in: .whitespacesAndNewlines), "", "systemd-analyze warnings")
    }

    func testVerifyCatchesABrokenUnit() throws {
        XCTAssertEqual(try install().status, 0)
        let unit = path("/etc/systemd/system/mambaformer-router.service")
        try (read("/etc/systemd/system/mambaformer-router.service") + "\n[Service]\nRestartt=always\n")
            .write(toFile: unit, atomically: true, encoding: .utf8)
        let r = try verify(["mambaformer-router.service"])
        XCTAssertTrue(r.err.contains("Restartt"), r.err)
        // And a missing binary fails outright.
        try FileManager.default.removeItem(atPath: path("/usr/local/bin/mambaformer"))
        XCTAssertNotEqual(try verify(["mambaformer-gateway.service"]).status, 0)
    }

    /// `systemd-analyze security --offline` rates each service's exposure (0 = locked down,
    /// 10 = unprotected; a unit without any sandboxing scores 9.6).
    func testExposureLevelIsLow() throws {
        XCTAssertEqual(try install().status, 0)
        try requireSystemdAnalyze()
        let dir = path("/etc/systemd/system")
        for unit in ["mambaformer-router.service", "mambaformer-gateway.service", "mambaformer-expert@emamba-1.service",
                     "mambaformer-autoscaler.service", "mambaformer-router@1.service"] {
            let r = try Self.run("/usr/bin/systemd-analyze", ["security", "--offline=true", "--root=\(root.path)", "\(dir)/\(unit)"])
            let line = r.out.split(separator: "\n").first { $0.contains("Overall exposure level") } ?? ""
            let score = line.split(separator: ":").last?.split(separator: " ").first.flatMap { Double($0) }
            XCTAssertNotNil(score, "\(unit): \(r.out.suffix(500)) \(r.err)")
            XCTAssertLessThanOrEqual(score ?? 99, 2.0, "\(unit): \(line)")
        }
    }

    /// The sandbox and restart settings are the same in every service (no unit forgotten).
    func testEveryServiceHasTheSameHardening() throws {
        func hardening(_ unit: String) throws -> [String] {
            let text = try String(contentsOf: Self.repositoryRoot.appendingPathComponent("Deploy/\(unit)"), encoding: .utf8)
            let keys = ["User=", "Protect", "Private", "NoNewPrivileges=", "CapabilityBoundingSet=", "ReadOnlyPaths=",
                        "Restart=", "RestartSec=", "Restrict", "SystemCall", "MemoryDenyWriteExecute=", "Type=", "NotifyAccess="]
            return text.split(separator: "\n").map(String.init).filter { line in keys.contains { line.hasPrefix($0) } }
        }
        let router = try hardening("mambaformer-router.service")
        XCTAssertTrue(router.contains("Type=notify"))
        XCTAssertTrue(router.contains("ProtectSystem=strict"))
        XCTAssertTrue(router.contains("CapabilityBoundingSet="))
        XCTAssertTrue(router.contains("ReadOnlyPaths=-/var/lib/mambaformer/model"))
        XCTAssertEqual(try hardening("mambaformer-gateway.service"), router)
        XCTAssertEqual(try hardening("mambaformer-expert@.service"), router)
        XCTAssertEqual(try hardening("mambaformer-router@.service"), router)
        // The autoscaler runs as its own user (polkit lets it start and stop expert units).
        XCTAssertEqual(try hardening("mambaformer-autoscaler.service").filter { !$0.hasPrefix("User=") },
                       router.filter { !$0.hasPrefix("User=") })
    }
}
