import Foundation
import Wire
import XCTest

/// Three "hosts" as network namespaces joined by veth pairs, each node configured by its own
/// cluster.toml as on real hosts:
///
///   ns A (10.231.1.2) EMamba replica ──veth──┐
///                                            ns R: router (backend tcp://0.0.0.0:5556) + gateway
///   ns B (10.231.2.2) ET5 replica    ──veth──┘      (10.231.1.1, 10.231.2.1; HTTP on 127.0.0.1:8080)
///
/// A request is answered with spans from both namespaces (the alternating gate uses both
/// pools); then host B is cut off and destroyed while requests are running, and they still
/// complete (the router retries the lost spans on the EMamba pool). Every link uses CURVE,
/// keys named in the configuration files; an expert whose key is not allowed never joins.
final class MultiHostTests: XCTestCase {
    let tag = String(UUID().uuidString.prefix(4)).lowercased()
    var namespaces: [String] { [ns("r"), ns("a"), ns("b")] }
    func ns(_ host: String) -> String { "mf-\(tag)-\(host)" }
    var dir: URL!
    var processes: [String: Process] = [:]
    var ipTool = "/usr/sbin/ip"

    // MARK: Set-up and clean-up

    @discardableResult
    func ip(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: ipTool)
        p.arguments = arguments
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func mustIP(_ arguments: [String]) throws {
        let r = try ip(arguments)
        if r.status != 0 { throw NSError(domain: "ip \(arguments.joined(separator: " ")): \(r.output)", code: Int(r.status)) }
    }

    override func setUpWithError() throws {
        guard let tool = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].first(where: FileManager.default.isExecutableFile) else {
            throw XCTSkip("multi-host test needs iproute2's `ip` (apt-get install iproute2; scripts/install-deps.sh does)")
        }
        ipTool = tool
        let probe = try ip(["netns", "add", ns("r")])
        if probe.status != 0 {
            let text = probe.output.lowercased()
            if text.contains("permission denied") || text.contains("operation not permitted") {
                throw XCTSkip("multi-host test needs root (CAP_SYS_ADMIN + CAP_NET_ADMIN) for `ip netns add`: \(probe.output)")
            }
            XCTFail("ip netns add failed: \(probe.output)")
            throw CancellationError()
        }
        addTeardownBlock { [weak self] in self?.cleanUp() }
        try mustIP(["netns", "add", ns("a")])
        try mustIP(["netns", "add", ns("b")])
        for n in namespaces { try mustIP(["-n", n, "link", "set", "lo", "up"]) }
        // One cable from R to each expert host.
        for (host, subnet) in [("a", 1), ("b", 2)] {
            let rSide = "mf\(tag)r\(host)", hostSide = "mf\(tag)\(host)r"
            try mustIP(["link", "add", rSide, "netns", ns("r"), "type", "veth", "peer", "name", hostSide, "netns", ns(host)])
            try mustIP(["-n", ns("r"), "addr", "add", "10.231.\(subnet).1/24", "dev", rSide])
            try mustIP(["-n", ns(host), "addr", "add", "10.231.\(subnet).2/24", "dev", hostSide])
            try mustIP(["-n", ns("r"), "link", "set", rSide, "up"])
            try mustIP(["-n", ns(host), "link", "set", hostSide, "up"])
        }
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("mf-multihost-\(tag)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    /// Always runs: every process we started, anything else left in our namespaces, the namespaces.
    func cleanUp() {
        for p in processes.values where p.isRunning { kill(p.processIdentifier, SIGKILL) }
        for p in processes.values { p.waitUntilExit() }
        for n in namespaces {
            if let pids = try? ip(["netns", "pids", n]).output {
                for pid in pids.split(separator: "\n").compactMap({ Int32($0) }) { kill(pid, SIGKILL) }
            }
            _ = try? ip(["netns", "del", n])
        }
        if let dir { try? FileManager.default.removeItem(at: dir) }
    }

    // MARK: Nodes

    /// Starts `mambaformer ARGS` inside a namespace (`ip netns exec` execs, so the pid is the node's).
    @discardableResult
    func start(_ name: String, in namespace: String, _ arguments: [String], environment: [String: String] = [:]) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: ipTool)
        p.arguments = ["netns", "exec", namespace, ClusterHarness.binary.path] + arguments
        let log = dir.appendingPathComponent("\(name).log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        p.standardOutput = handle
        p.standardError = handle
        var env = ProcessInfo.processInfo.environment
        env["MAMBAFORMER_PARENT_PID"] = "\(getpid())"
        env["OPENBLAS_NUM_THREADS"] = "1"
        p.environment = env.merging(environment) { $1 }
        try p.run()
        processes[name] = p
        return p
    }

    func logs() -> String {
        processes.keys.sorted().map { name in
            let text = (try? String(contentsOf: dir.appendingPathComponent("\(name).log"), encoding: .utf8)) ?? ""
            return "---- \(name) ----\n\(text.suffix(2500))"
        }.joined(separator: "\n")
    }

    /// A host's /etc/mambaformer/cluster.toml.
    func writeConfig(_ host: String, _ text: String) throws -> String {
        let url = dir.appendingPathComponent("\(host).toml")
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    func expertConfig(routerAddress: String, key: String) -> String {
        """
        [expert]
        router = "tcp://\(routerAddress):5556"
        model = "\(ClusterHarness.demoCheckpoint.path)"
        heartbeat_ms = 500
        ignore_eos = true

        [security]
        curve = true
        router_public_key = "\(keys)/router.pub"
        expert_secret_key = "\(keys)/\(key).key"
        """
    }

    var keys: String { dir.appendingPathComponent("keys").path }

    /// `mambaformer keygen` for every node; the router allows all but the intruder.
    func makeKeys() throws {
        let allowed = keys + "/allowed"
        try FileManager.default.createDirectory(atPath: allowed, withIntermediateDirectories: true)
        for name in ["router", "gateway", "expert-a", "expert-b", "intruder"] {
            try Keys.writeKeyPair(name: name, directory: keys)
        }
        for name in ["gateway", "expert-a", "expert-b"] {
            try FileManager.default.copyItem(atPath: "\(keys)/\(name).pub", toPath: "\(allowed)/\(name).pub")
        }
    }

    /// curl from inside namespace R (the gateway listens on R's loopback).
    func curl(_ arguments: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: ipTool)
        p.arguments = ["netns", "exec", ns("r"), "/usr/bin/curl", "-s", "--max-time", "90"] + arguments
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    func ask(_ question: String, maxTokens: Int) throws -> (code: Int, json: [String: Any]) {
        let body = #"{"question": "\#(question)", "max_tokens": \#(maxTokens)}"#
        let out = try curl(["-X", "POST", "http://127.0.0.1:8080/v1/answer", "-H", "content-type: application/json",
                            "--data", body, "-w", "\n%{http_code}"])
        let lines = out.split(separator: "\n", omittingEmptySubsequences: false)
        let json = (try? JSONSerialization.jsonObject(with: Data(lines.dropLast().joined(separator: "\n").utf8))) as? [String: Any]
        return (Int(lines.last ?? "") ?? 0, json ?? [:])
    }

    /// The instances that served an answer: a replica id is `INSTANCE@HOST`, and the
    /// namespaces here share one host name.
    func replicas(_ json: [String: Any]) -> Set<String> {
        Set(((json["trace"] as? [[String: Any]]) ?? []).compactMap { ($0["replica"] as? String).map(instance) })
    }

    func instance(_ replicaId: String) -> String { String(replicaId.prefix { $0 != "@" }) }

    /// systemd's notify socket, played by the test: READY=1 / STOPPING=1 from the nodes.
    func notifySocket() throws -> (fd: Int32, path: String) {
        let path = dir.appendingPathComponent("notify").path
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in path.utf8.enumerated() { raw[i] = b } }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(rc, 0)
        var timeout = timeval(tv_sec: 60, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return (fd, path)
    }

    func receive(_ fd: Int32) -> String {
        var buffer = [UInt8](repeating: 0, count: 2048)
        let n = recv(fd, &buffer, buffer.count, 0)
        return n > 0 ? String(decoding: buffer.prefix(n), as: UTF8.self) : ""
    }

    // MARK: The test

    func testRequestsUseExpertsOnTwoHostsAndSurviveLosingOne() throws {
        let notify = try notifySocket()
        defer { close(notify.fd) }
        try makeKeys()

        let routerHost = try writeConfig("host-r", """
            [router]
            frontend = "tcp://127.0.0.1:5555"
            backend = "tcp://0.0.0.0:5556"
            model = "\(ClusterHarness.demoCheckpoint.path)"
            gate = "alternate"
            span_tokens = 4
            heartbeat_ms = 500

            [gateway]
            listen = "127.0.0.1:8080"
            router = "tcp://127.0.0.1:5555"

            [security]
            curve = true
            router_public_key = "\(keys)/router.pub"
            router_secret_key = "\(keys)/router.key"
            allowed_keys_dir = "\(keys)/allowed"
            gateway_secret_key = "\(keys)/gateway.key"
            """)
        try start("router", in: ns("r"), ["router", "--config", routerHost], environment: ["NOTIFY_SOCKET": notify.path])
        XCTAssertTrue(receive(notify.fd).hasPrefix("READY=1"), "router readiness\n\(logs())")
        try start("gateway", in: ns("r"), ["gateway", "--config", routerHost], environment: ["NOTIFY_SOCKET": notify.path])
        XCTAssertTrue(receive(notify.fd).hasPrefix("READY=1"), "gateway readiness\n\(logs())")
        try start("emamba-a1", in: ns("a"), ["expert", "--config", try writeConfig("host-a", expertConfig(routerAddress: "10.231.1.1", key: "expert-a")),
                                             "--instance", "emamba-a1"])
        try start("et5-b1", in: ns("b"), ["expert", "--config", try writeConfig("host-b", expertConfig(routerAddress: "10.231.2.1", key: "expert-b")),
                                          "--instance", "et5-b1"])
        // On host A too, but with a key the router does not know: it must never serve.
        try start("et5-intruder", in: ns("a"), ["expert", "--config", try writeConfig("host-a-intruder",
                  expertConfig(routerAddress: "10.231.1.1", key: "intruder")), "--instance", "et5-intruder"])

        // Both replicas registered with the router, across the veth links.
        let deadline = Date().addingTimeInterval(90)
        var ready = ""
        while Date() < deadline {
            ready = try curl(["http://127.0.0.1:8080/readyz"])
            if ready.contains(#""emamba":1"#), ready.contains(#""et5":1"#) { break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        XCTAssertTrue(ready.contains(#""emamba":1"#) && ready.contains(#""et5":1"#), "not ready: \(ready)\n\(logs())")

        // 1. One answer, spans from both namespaces.
        let first = try ask("What is gingivitis?", maxTokens: 16)
        XCTAssertEqual(first.code, 200, "\(first.json)\n\(logs())")
        XCTAssertEqual(replicas(first.json), ["emamba-a1", "et5-b1"], "\(first.json)")

        // 2. Requests in flight while host B is cut off (no FIN, no RST: only heartbeats can
        // tell) and then destroyed. They stream, so the test sees that they are under way.
        let maxTokens = 160
        var streams: [(process: Process, output: URL)] = []
        for i in 0..<4 {
            let output = dir.appendingPathComponent("stream-\(i).txt")
            FileManager.default.createFile(atPath: output.path, contents: nil)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: ipTool)
            p.arguments = ["netns", "exec", ns("r"), "/usr/bin/curl", "-s", "-N", "--max-time", "120", "-X", "POST",
                           "http://127.0.0.1:8080/v1/answer", "-H", "content-type: application/json", "--data",
                           #"{"question": "Question \#(i) about periodontal disease?", "max_tokens": \#(maxTokens), "stream": true}"#]
            p.standardOutput = try FileHandle(forWritingTo: output)
            try p.run()
            processes["stream-\(i)"] = p
            streams.append((p, output))
        }
        func streamed(_ url: URL) -> String { (try? String(contentsOf: url, encoding: .utf8)) ?? "" }
        let underWay = Date().addingTimeInterval(60)
        while Date() < underWay, !streams.allSatisfy({ streamed($0.output).components(separatedBy: "event: span").count > 2 }) {
            Thread.sleep(forTimeInterval: 0.01)
        }
        for s in streams {
            let text = streamed(s.output)
            XCTAssertGreaterThan(text.components(separatedBy: "event: span").count, 2, "request under way: \(text.prefix(300))")
            XCTAssertFalse(text.contains("event: done"), "the requests must still be running when host B goes away")
        }
        try mustIP(["-n", ns("r"), "link", "del", "mf\(tag)rb"])   // the cable (both veth ends go)
        if let expert = processes["et5-b1"] { kill(expert.processIdentifier, SIGKILL) }
        _ = try ip(["netns", "del", ns("b")])
        let finished = Date().addingTimeInterval(120)
        while Date() < finished, streams.contains(where: { $0.process.isRunning }) { Thread.sleep(forTimeInterval: 0.05) }

        for s in streams {
            let text = streamed(s.output)
            guard let range = text.range(of: "event: done\ndata: ") else {
                XCTFail("no done event: \(text.suffix(500))\n\(logs())")
                continue
            }
            let data = text[range.upperBound...].prefix { $0 != "\n" }
            let json = (try? JSONSerialization.jsonObject(with: Data(data.utf8))) as? [String: Any] ?? [:]
            XCTAssertEqual(json["finish_reason"] as? String, "length", "\(json)")
            let usage = json["usage"] as? [String: Any]
            XCTAssertEqual(usage?["completion_tokens"] as? Int, maxTokens, "every answer complete: \(json)")
            // Spans came from host B before the cut, and once B was gone ET5's turns (every
            // second span) went to EMamba on host A: more EMamba spans than alternation gives.
            let trace = (json["trace"] as? [[String: Any]]) ?? []
            let byReplica = Dictionary(grouping: trace.compactMap { ($0["replica"] as? String).map(instance) }, by: { $0 }).mapValues(\.count)
            XCTAssertGreaterThan(byReplica["et5-b1"] ?? 0, 0, "spans from host B before the cut: \(byReplica)")
            XCTAssertGreaterThan(byReplica["emamba-a1"] ?? 0, trace.count / 2 + 1, "ET5 turns taken over by host A: \(byReplica)")
        }

        // 3. After the loss the cluster keeps answering, from host A only.
        let after = try ask("What is a molar?", maxTokens: 8)
        XCTAssertEqual(after.code, 200, "\(after.json)\n\(logs())")
        XCTAssertEqual(replicas(after.json), ["emamba-a1"])
        // B's replica is declared dead (3 missed heartbeats) and the intruder never joined.
        var readyAfter = ""
        let dead = Date().addingTimeInterval(15)
        while Date() < dead {
            readyAfter = try curl(["http://127.0.0.1:8080/readyz"])
            if readyAfter.contains(#""et5":0"#) { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        XCTAssertTrue(readyAfter.contains(#""et5":0"#), "the intruder's key is refused: \(readyAfter)")
        XCTAssertTrue(processes["et5-intruder"]?.isRunning ?? false, "the intruder keeps knocking (refused by ZAP, not crashed)")

        // 4. Draining on SIGTERM is announced to systemd.
        if let router = processes["router"] { kill(router.processIdentifier, SIGTERM) }
        XCTAssertTrue(receive(notify.fd).hasPrefix("STOPPING=1"), "router STOPPING=1\n\(logs())")
    }
}
