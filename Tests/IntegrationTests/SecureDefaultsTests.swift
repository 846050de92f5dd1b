import Foundation
#if canImport(Glibc)
import Glibc
#endif
import TestCommon
import XCTest

/// Secure by default on the wire (issue 15): plain-text TCP is refused unless the operator
/// opts out, and the router's ipc:// folder is closed to other local users.
final class SecureDefaultsTests: XCTestCase {
    func testPlainTextTCPIsRefusedWithoutTheOptOut() throws {
        let harness = try ClusterHarness()
        defer { harness.stopAll() }
        let base = ClusterHarness.freePort(count: 2)
        let tcp = ["--frontend", "tcp://127.0.0.1:\(base)", "--backend", "tcp://127.0.0.1:\(base + 1)"]
        for (name, arguments) in [("router", ["router", "--model", harness.model.path] + tcp),
                                  ("expert", ["expert", "--kind", "emamba", "--model", harness.model.path,
                                              "--router", "tcp://127.0.0.1:\(base + 1)"]),
                                  ("gateway", ["gateway", "--listen", "127.0.0.1:\(ClusterHarness.freePort())",
                                               "--router", "tcp://127.0.0.1:\(base)"])] {
            try harness.start(name, arguments)
            XCTAssertEqual(harness.waitForExit(name, timeout: 20), 1, "\(name) started on plain-text TCP\n\(harness.log(name))")
            XCTAssertTrue(harness.log(name).contains("security.allow_plaintext_wire"), harness.log(name))
        }
        // With the opt-out, the router starts (a trusted network, the operator's call).
        try harness.start("router-open", ["router", "--model", harness.model.path] + tcp,
                          environment: ["MAMBAFORMER_SECURITY_ALLOW_PLAINTEXT_WIRE": "true"])
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, !harness.log("router-open").contains("router listening") { Thread.sleep(forTimeInterval: 0.05) }
        XCTAssertTrue(harness.log("router-open").contains("router listening"), harness.log("router-open"))
    }

    func testTheRoutersIPCFolderIsClosedToOtherUsers() throws {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else {
            throw XCTSkip("needs root and setpriv to act as another user")
        }
        let harness = try ClusterHarness()
        defer { harness.stopAll() }
        // A folder that does not exist yet, as /run/mambaformer before the first start.
        let folder = harness.dir.appendingPathComponent("run/mambaformer")
        try harness.start("router", ["router", "--model", harness.model.path,
                                     "--frontend", "ipc://\(folder.path)/frontend", "--backend", "ipc://\(folder.path)/backend"])
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, !harness.log("router").contains("router listening") { Thread.sleep(forTimeInterval: 0.05) }
        XCTAssertTrue(harness.log("router").contains("router listening"), harness.log("router"))
        let mode = (try FileManager.default.attributesOfItem(atPath: folder.path)[.posixPermissions] as? Int) ?? -1
        XCTAssertEqual(mode, 0o750, String(mode, radix: 8))
        // Root ignores file modes: check as "nobody" that the sockets cannot be reached. The
        // parent folders are opened to everyone first, so that only this folder's mode decides.
        for dir in [harness.dir, harness.dir.appendingPathComponent("run")] {
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir.path)
        }
        let asNobody = try runCommand("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups",
                                                           "/usr/bin/test", "-e", folder.appendingPathComponent("frontend").path])
        XCTAssertNotEqual(asNobody.status, 0, "another user can reach the router's socket")
        let asRoot = try runCommand("/usr/bin/test", ["-e", folder.appendingPathComponent("frontend").path])
        XCTAssertEqual(asRoot.status, 0, "the socket is not there at all")
    }
}
