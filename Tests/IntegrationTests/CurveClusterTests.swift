import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Wire
import XCTest

/// CURVE on between real processes on loopback (issue #12, "Security"; the multi-host
/// test does the same across network namespaces but needs root). The router accepts the
/// gateway's key on its frontend only and one expert's key on its backend only: keys in the
/// wrong role, unknown keys and plain-text peers get nothing through; a key added to the
/// experts' folder is accepted after a SIGHUP, without a restart.
final class CurveClusterTests: XCTestCase {
    func testUnknownKeysWrongRolesAndPlainTextPeersAreShutOut() async throws {
        let harness = try ClusterHarness()
        defer { harness.stopAll() }
        let keys = harness.dir.appendingPathComponent("keys").path
        let gateways = keys + "/gateways", experts = keys + "/experts"
        for dir in [gateways, experts] { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        for name in ["router", "gateway", "expert", "intruder-gateway", "late-expert", "thief-expert"] {
            try Keys.writeKeyPair(name: name, directory: keys)
        }
        try FileManager.default.copyItem(atPath: "\(keys)/gateway.pub", toPath: "\(gateways)/gateway.pub")
        try FileManager.default.copyItem(atPath: "\(keys)/expert.pub", toPath: "\(experts)/expert.pub")
        let base = ClusterHarness.freePort(count: 4)
        let frontend = "tcp://127.0.0.1:\(base)", backend = "tcp://127.0.0.1:\(base + 1)"

        func config(_ name: String, _ security: String) throws -> String {
            let path = harness.dir.appendingPathComponent("\(name).toml").path
            try """
                [router]
                frontend = "\(frontend)"
                backend = "\(backend)"
                model = "\(harness.model.path)"
                gate = "alternate"
                span_tokens = 4
                heartbeat_ms = 500

                [expert]
                router = "\(backend)"
                model = "\(harness.model.path)"
                heartbeat_ms = 500

                [security]
                curve = true
                router_public_key = "\(keys)/router.pub"
                \(security)
                """.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        try harness.start("router", ["router", "--config", try config("router", """
            router_secret_key = "\(keys)/router.key"
            gateway_keys_dir = "\(gateways)"
            expert_keys_dir = "\(experts)"
            """)])
        try harness.start("emamba-1", ["expert", "--kind", "emamba", "--replica-id", "emamba-1", "--config",
                                       try config("expert", #"expert_secret_key = "\#(keys)/expert.key""#)])
        // An ET5 replica holding the *gateway's* key (a compromised gateway host, say): a valid
        // key in the wrong role. It must never register nor hear a prompt.
        try harness.start("et5-intruder", ["expert", "--kind", "et5", "--replica-id", "et5-intruder", "--config",
                                           try config("intruder-expert", #"expert_secret_key = "\#(keys)/gateway.key""#)])
        let goodPort = base + 2, badPort = base + 3
        try harness.start("gateway", ["gateway", "--listen", "127.0.0.1:\(goodPort)", "--router", frontend, "--config",
                                      try config("gateway", #"gateway_secret_key = "\#(keys)/gateway.key""#)])
        // A gateway holding the *expert's* key: it must not submit past the real gateway's door.
        try harness.start("intruder-gateway", ["gateway", "--listen", "127.0.0.1:\(badPort)", "--router", frontend, "--config",
                                               try config("intruder-gateway", #"gateway_secret_key = "\#(keys)/expert.key""#)])

        // The allowed expert registers; give the intruder as long again to (fail to) join.
        let good = URL(string: "http://127.0.0.1:\(goodPort)")!, bad = URL(string: "http://127.0.0.1:\(badPort)")!
        var ready = ""
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, !ready.contains(#""emamba":1"#) {
            ready = (try? String(contentsOf: good.appendingPathComponent("readyz"), encoding: .utf8)) ?? ""
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        XCTAssertTrue(ready.contains(#""emamba":1"#), "the allowed expert did not register: \(ready)\n\(harness.allLogs())")

        // Plain-text peers on both router sockets: a request and a Ready, no answer, no replica.
        let context = try ZmqContext()
        defer { context.terminate() }
        var plain: [ZmqSocket] = []
        for (endpoint, envelope) in [(frontend, Envelope(.answerRequest(question("plain-1", "What is a molar?")))),
                                     (backend, Envelope(.ready(Ready(pool: .et5, modelId: "m", replicaId: "plain-et5",
                                                                      capacity: 8, softwareVersion: "x"))))] {
            let socket = try ZmqSocket(context: context, type: .dealer)
            try socket.connect(endpoint)
            _ = try socket.send(envelope, to: nil)
            plain.append(socket)
        }
        try await Task.sleep(nanoseconds: 3_000_000_000)
        for socket in plain {
            XCTAssertFalse(try ZmqPoll.poll([socket], timeoutMs: 10)[0], "a plain-text peer got a reply")
            socket.close()
        }

        ready = (try? String(contentsOf: good.appendingPathComponent("readyz"), encoding: .utf8)) ?? ""
        XCTAssertTrue(ready.contains(#""et5":0"#), "an unknown or plain-text ET5 replica joined: \(ready)")
        XCTAssertTrue(harness.processes["et5-intruder"]?.isRunning ?? false, "the intruder is refused by ZAP, not crashed")

        // The allowed gateway is answered, by the allowed replica only (ET5 pool empty → fallback).
        let answer = try await post(good)
        XCTAssertEqual(answer.status, 200, "\(answer.body)\n\(harness.allLogs())")
        XCTAssertTrue(answer.body.contains(#""replica":"emamba-1""#), answer.body)
        XCTAssertFalse(answer.body.contains("intruder") || answer.body.contains("plain-et5"), answer.body)
        // The gateway with an unknown key never reaches the router: not ready, and 503.
        let refused = try await post(bad)
        XCTAssertEqual(refused.status, 503, refused.body)
        let probe = try await URLSession.shared.data(from: bad.appendingPathComponent("readyz"))
        XCTAssertEqual((probe.1 as? HTTPURLResponse)?.statusCode, 503)

        // A new ET5 host: refused until its key is in the experts' folder and the router has
        // read the folder again (SIGHUP), then it serves. No restart.
        try harness.start("et5-late", ["expert", "--kind", "et5", "--replica-id", "et5-late", "--config",
                                       try config("late-expert", #"expert_secret_key = "\#(keys)/late-expert.key""#)])
        try await Task.sleep(nanoseconds: 2_000_000_000)
        ready = (try? String(contentsOf: good.appendingPathComponent("readyz"), encoding: .utf8)) ?? ""
        XCTAssertTrue(ready.contains(#""et5":0"#), "a key not yet allowed joined: \(ready)")
        try FileManager.default.copyItem(atPath: "\(keys)/late-expert.pub", toPath: "\(experts)/late-expert.pub")
        try FileManager.default.copyItem(atPath: "\(keys)/thief-expert.pub", toPath: "\(experts)/thief-expert.pub")
        harness.signal("router", SIGHUP)
        let reloaded = Date()
        while Date().timeIntervalSince(reloaded) < 20, !ready.contains(#""et5":1"#) {
            ready = (try? String(contentsOf: good.appendingPathComponent("readyz"), encoding: .utf8)) ?? ""
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        XCTAssertTrue(ready.contains(#""et5":1"#), "the new key was not accepted after SIGHUP: \(ready)\n\(harness.log("router"))")
        XCTAssertTrue(harness.log("router").contains("allow-lists reloaded"), harness.log("router"))
        XCTAssertFalse(harness.log("router").contains("replica=et5-intruder"), "the wrong-role expert registered")

        // An allowed expert key claiming a replica id that another key registered: refused, so
        // it can take over neither the id's statistics nor the operator's trust in that name.
        try harness.start("thief", ["expert", "--kind", "emamba", "--replica-id", "emamba-1", "--config",
                                    try config("thief-expert", #"expert_secret_key = "\#(keys)/thief-expert.key""#)])
        let refusalSeen = Date()
        while Date().timeIntervalSince(refusalSeen) < 20, !harness.log("thief").contains("router refused this replica") {
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        XCTAssertTrue(harness.log("thief").contains("registered by another key"), harness.log("thief"))
        XCTAssertTrue(harness.log("router").contains("replica id is registered by another key"), harness.log("router"))
        ready = (try? String(contentsOf: good.appendingPathComponent("readyz"), encoding: .utf8)) ?? ""
        XCTAssertTrue(ready.contains(#""emamba":1"#), "the thief registered: \(ready)")

        // Revoking a key cuts off the connection it already has: out of the folder, SIGHUP,
        // and the replica leaves the pool (it is told why) without a router restart.
        try FileManager.default.removeItem(atPath: "\(experts)/late-expert.pub")
        harness.signal("router", SIGHUP)
        let revoked = Date()
        while Date().timeIntervalSince(revoked) < 20, !ready.contains(#""et5":0"#) {
            ready = (try? String(contentsOf: good.appendingPathComponent("readyz"), encoding: .utf8)) ?? ""
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        let revokedAfter = Date().timeIntervalSince(revoked)
        XCTAssertTrue(ready.contains(#""et5":0"#), "the revoked expert still serves: \(ready)\n\(harness.log("router"))")
        for _ in 0..<3 {
            let after = try await post(good)
            XCTAssertEqual(after.status, 200, after.body)
            XCTAssertFalse(after.body.contains("et5-late"), "a revoked replica served a span: \(after.body)")
        }
        XCTAssertTrue(harness.log("et5-late").contains("removed from the router's allow-list"), harness.log("et5-late"))
        print("RELIABILITY curve: allowed expert and gateway served (200); an expert with the gateway's key never registered, "
              + "a gateway with the expert's key got \(refused.status), plain-text request and Ready got no reply; "
              + "a new expert key accepted after SIGHUP; an allowed key claiming another key's replica id refused; "
              + "a revoked expert left its pool \(String(format: "%.1f s", revokedAfter)) after SIGHUP")
    }

    private func post(_ base: URL) async throws -> (status: Int, body: String) {
        var request = URLRequest(url: base.appendingPathComponent("v1/answer"), timeoutInterval: 30)
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "content-type")
        request.httpBody = Data(#"{"question": "What is a molar?", "max_tokens": 8}"#.utf8)
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }
}
