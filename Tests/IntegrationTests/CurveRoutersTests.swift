import Foundation
import Wire
import XCTest

/// Two routers with CURVE, each with its own key pair (two router hosts): every expert and the
/// gateway list both routers and `security.router_public_key` one key per router, in the order
/// of the endpoints. Both routers serve; with one killed the other still does; keys given in
/// the wrong order get no connection at all, and a key list that does not match the routers is
/// refused at start.
final class CurveRoutersTests: XCTestCase {
    func testEachRouterWithItsOwnKey() async throws {
        let harness = try ClusterHarness()
        defer { harness.stopAll() }
        let keys = harness.dir.appendingPathComponent("keys").path
        let gateways = keys + "/gateways", experts = keys + "/experts"
        for dir in [gateways, experts] { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        for name in ["router-a", "router-b", "gateway", "expert"] { try Keys.writeKeyPair(name: name, directory: keys) }
        try FileManager.default.copyItem(atPath: "\(keys)/gateway.pub", toPath: "\(gateways)/gateway.pub")
        try FileManager.default.copyItem(atPath: "\(keys)/expert.pub", toPath: "\(experts)/expert.pub")
        let base = ClusterHarness.freePort(count: 6)
        let frontends = ["tcp://127.0.0.1:\(base)", "tcp://127.0.0.1:\(base + 2)"]
        let backends = ["tcp://127.0.0.1:\(base + 1)", "tcp://127.0.0.1:\(base + 3)"]
        func list(_ items: [String]) -> String { "[" + items.map { "\"\($0)\"" }.joined(separator: ", ") + "]" }

        func config(_ name: String, routerKeys: [String], _ security: String, router: (String, String)? = nil) throws -> String {
            let path = harness.dir.appendingPathComponent("\(name).toml").path
            try """
                [router]
                frontend = "\(router?.0 ?? frontends[0])"
                backend = "\(router?.1 ?? backends[0])"
                model = "\(harness.model.path)"
                gate = "alternate"
                span_tokens = 4
                heartbeat_ms = 500

                [gateway]
                router = \(list(frontends))

                [expert]
                router = \(list(backends))
                model = "\(harness.model.path)"
                heartbeat_ms = 500

                [security]
                curve = true
                router_public_key = \(list(routerKeys))
                \(security)
                """.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let inOrder = ["\(keys)/router-a.pub", "\(keys)/router-b.pub"]
        for (i, name) in ["a", "b"].enumerated() {
            try harness.start("router-\(name)", ["router", "--config", try config("router-\(name)", routerKeys: [inOrder[i]], """
                router_secret_key = "\(keys)/router-\(name).key"
                gateway_keys_dir = "\(gateways)"
                expert_keys_dir = "\(experts)"
                """, router: (frontends[i], backends[i]))])
        }
        let expertConfig = try config("expert", routerKeys: inOrder, #"expert_secret_key = "\#(keys)/expert.key""#)
        try harness.start("emamba-1", ["expert", "--kind", "emamba", "--replica-id", "emamba-1", "--config", expertConfig])
        try harness.start("et5-1", ["expert", "--kind", "et5", "--replica-id", "et5-1", "--config", expertConfig])
        let port = base + 4, swappedPort = base + 5
        try harness.start("gateway", ["gateway", "--listen", "127.0.0.1:\(port)", "--config",
                                      try config("gateway", routerKeys: inOrder, #"gateway_secret_key = "\#(keys)/gateway.key""#)])
        // The same gateway key, the routers' keys swapped: neither handshake can succeed.
        try harness.start("swapped", ["gateway", "--listen", "127.0.0.1:\(swappedPort)", "--config",
                                      try config("swapped", routerKeys: inOrder.reversed(), #"gateway_secret_key = "\#(keys)/gateway.key""#)])

        func readyz(_ port: Int) -> String {
            (try? RawHTTP.exchange(port: port, RawHTTP.request("GET", "/readyz"), timeout: 5).body) ?? ""
        }
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, !(readyz(port).contains(#""reachable":2"#) && readyz(port).contains(#""emamba":1"#)
                                   && readyz(port).contains(#""et5":1"#)) {
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        XCTAssertTrue(readyz(port).contains(#""reachable":2"#), "both routers, each with its key: \(readyz(port))\n\(harness.allLogs())")
        let ask = RawHTTP.request("POST", "/v1/answer", headers: ["Content-Type: application/json"],
                                  body: Array(#"{"question":"What is a molar?","max_tokens":8}"#.utf8))
        XCTAssertEqual(try RawHTTP.exchange(port: port, ask).status, 200)
        XCTAssertTrue(readyz(swappedPort).contains(#""reachable":0"#), "swapped keys reach no router: \(readyz(swappedPort))")
        XCTAssertEqual(try RawHTTP.exchange(port: swappedPort, ask).status, 503)

        // One router host lost: the other serves every answer.
        harness.signal("router-a", SIGKILL)
        XCTAssertNotNil(harness.waitForExit("router-a"))
        try await Task.sleep(nanoseconds: 500_000_000)
        for _ in 0..<4 { XCTAssertEqual(try RawHTTP.exchange(port: port, ask).status, 200) }

        // Three keys for two routers: refused at start, naming the setting.
        try harness.start("mismatched", ["gateway", "--listen", "127.0.0.1:\(swappedPort + 100)", "--config",
                                         try config("mismatched", routerKeys: inOrder + [inOrder[0]],
                                                    #"gateway_secret_key = "\#(keys)/gateway.key""#)])
        XCTAssertNotNil(harness.waitForExit("mismatched"), "a key list that does not match the routers is refused")
        XCTAssertTrue(harness.log("mismatched").contains("lists 3 keys for 2 routers"), harness.log("mismatched"))
    }
}
