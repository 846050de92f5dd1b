import Foundation
import XCTest

/// The nodes refuse a bad configuration at start: exit non-zero, file, line and reason on stderr.
final class NodeStartupTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("mf-startup-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    func config(_ text: String) throws -> String {
        let path = dir.appendingPathComponent("cluster.toml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func node(_ arguments: [String], environment: [String: String] = [:]) throws -> InstallTests.Run {
        try InstallTests.run(InstallTests.binary.path, arguments, environment: environment)
    }

    func testEveryNodeRefusesAnOutOfRangeValueWithFileAndLine() throws {
        let path = try config("""
            [limits]
            max_tokens = 512

            max_concurrent = 0
            """)
        for command in [["router"], ["gateway"], ["expert", "--kind", "emamba"], ["up"]] {
            let r = try node(command + ["--config", path])
            XCTAssertNotEqual(r.status, 0, command.joined())
            XCTAssertTrue(r.err.contains("\(path):4: limits.max_concurrent: 0 is out of range (allowed: 1...100000)"),
                          "\(command): \(r.err)")
        }
    }

    func testUnknownKeyAndMissingFile() throws {
        let path = try config("[gateway]\nlisten = \"127.0.0.1:0\"\nlisen = \"x\"\n")
        var r = try node(["gateway", "--config", path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.err.contains("\(path):3: gateway.lisen: unknown setting (did you mean gateway.listen?)"), r.err)
        r = try node(["router", "--config", dir.appendingPathComponent("absent.toml").path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.err.contains("absent.toml does not exist"), r.err)
    }

    func testCurveWithAMissingKeyFileNamesTheSetting() throws {
        let key = dir.appendingPathComponent("router.key").path
        let path = try config("""
            [router]
            frontend = "ipc://\(dir.path)/f"
            backend = "ipc://\(dir.path)/b"
            [security]
            curve = true
            router_secret_key = "\(key)"
            """)
        let r = try node(["router", "--config", path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.err.contains("security.router_secret_key (\(path):6)"), r.err)
        XCTAssertTrue(r.err.contains(key), r.err)
    }

    func testFlagOverridesABadEnvironmentValueButNotABadFlag() throws {
        // The environment is checked even when a flag wins: a typo there is still a typo.
        var r = try node(["expert", "--kind", "et5", "--threads", "2"], environment: ["MAMBAFORMER_EXPERT_THREADS": "zero"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.err.contains("environment variable MAMBAFORMER_EXPERT_THREADS: expert.threads: expected an integer"), r.err)
        r = try node(["expert", "--instance", "et5-1", "--threads", "0"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.err.contains("flag --threads: expert.threads: 0 is out of range (allowed: 1...64)"), r.err)
    }
}
