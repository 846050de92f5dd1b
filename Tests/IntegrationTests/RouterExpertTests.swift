import Engine
import Generation
import Foundation
import Gateway
import Wire
import XCTest

/// Router + expert processes on ipc endpoints, driven through the gateway's RouterClient.
final class RouterExpertTests: XCTestCase {
    override func setUpWithError() throws {
        let manifest = ClusterHarness.demoCheckpoint.appendingPathComponent("mambaformer.json")
        XCTAssertTrue(FileManager.default.fileExists(atPath: manifest.path), "the demo checkpoint is missing: \(manifest.path)")
    }

    /// The cluster's merged answer equals the in-process answer with the same routing.
    func testAlternatingSpansFromBothPoolsEqualTheInProcessAnswer() async throws {
        let cluster = try ClusterHarness()
        let client = try await cluster.startCluster(gate: "alternate", spanTokens: 4, emamba: ["emamba-1"], et5: ["et5-1"])
        defer { client.shutdown() }

        let request = question("alt-1", "What is gingivitis?", maxTokens: 20)
        let answer = try await client.collect(request)
        XCTAssertNil(answer.error, "\(answer.error.map { "\($0)" } ?? "")\n\(cluster.allLogs())")
        XCTAssertNotNil(answer.done)
        XCTAssertGreaterThanOrEqual(answer.spans.count, 2, "expected several spans: \(answer.spans)")
        for (i, span) in answer.spans.enumerated() {
            XCTAssertEqual(span.pool, i % 2 == 0 ? .emamba : .et5, "span \(i) on the wrong pool")
        }

        let local = try LocalExperts(checkpoint: MambaformerCheckpoint(root: ClusterHarness.demoCheckpoint), ignoreEOS: true)
        let reference = try local.answer(request, spanTokens: 4) { index, _ in index % 2 == 0 ? .emamba : .et5 }
        XCTAssertEqual(answer.text, reference.text)
        XCTAssertEqual(answer.spans.map(\.text), reference.spans.map(\.text))
    }

    /// Two EMamba replicas share 50 concurrent requests.
    func testConcurrentRequestsSpreadOverReplicas() async throws {
        let cluster = try ClusterHarness()
        let client = try await cluster.startCluster(gate: "rule", spanTokens: 8, emamba: ["emamba-1", "emamba-2"])
        defer { client.shutdown() }

        let answers = try await withThrowingTaskGroup(of: CollectedAnswer.self) { group in
            for i in 0..<50 {
                group.addTask { try await client.collect(question("c-\(i)", "What is a molar?", maxTokens: 16, forced: .emamba)) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        XCTAssertEqual(answers.count, 50)
        XCTAssertTrue(answers.allSatisfy { $0.done != nil && $0.error == nil }, cluster.allLogs())
        let replicas = Set(answers.flatMap { $0.spans.map(\.replicaId) })
        XCTAssertEqual(replicas, ["emamba-1", "emamba-2"], "both replicas must serve some spans")
    }

    /// SIGKILL of one EMamba replica with 20 requests in flight: all complete, identical answers.
    func testKilledReplicaLosesNoRequest() async throws {
        let cluster = try ClusterHarness()
        let client = try await cluster.startCluster(gate: "rule", spanTokens: 4, emamba: ["emamba-1", "emamba-2"])
        defer { client.shutdown() }

        let questions = (0..<20).map { i in ["What is gingivitis?", "What is a molar?", "What is a fever?", "What is insulin?"][i % 4] }
        func run(_ tag: String, killAfter: TimeInterval?) async throws -> [String: CollectedAnswer] {
            try await withThrowingTaskGroup(of: (String, CollectedAnswer).self) { group in
                for (i, q) in questions.enumerated() {
                    group.addTask { ("q\(i)", try await client.collect(question("\(tag)-\(i)", q, maxTokens: 40, forced: .emamba))) }
                }
                if let killAfter {
                    try await Task.sleep(nanoseconds: UInt64(killAfter * 1e9))
                    cluster.signal("emamba-2", SIGKILL)
                }
                return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
            }
        }
        let clean = try await run("clean", killAfter: nil)
        let faulty = try await run("fault", killAfter: 0.15)
        XCTAssertNotNil(cluster.waitForExit("emamba-2"), "the killed replica is gone")
        for (key, reference) in clean {
            let got = faulty[key]
            XCTAssertNil(got?.error, "\(key): \(String(describing: got?.error))\n\(cluster.allLogs())")
            XCTAssertNotNil(got?.done, key)
            XCTAssertEqual(got?.text, reference.text, key)
        }
        let retried = faulty.values.compactMap { $0.done?.retries }.reduce(0, +)
        XCTAssertGreaterThan(retried, 0, "the kill should have caught spans in flight")
    }

    /// A router restart: experts re-register within 3 s and new requests succeed.
    func testRouterRestartExpertsReregister() async throws {
        let cluster = try ClusterHarness()
        let client = try await cluster.startCluster(gate: "rule", emamba: ["emamba-1"], et5: ["et5-1"])
        defer { client.shutdown() }

        cluster.signal("router", SIGKILL)
        XCTAssertNotNil(cluster.waitForExit("router"))
        // The client notices the silence (3 missed heartbeats) before the new router starts.
        let killed = Date()
        while await client.status().routerReachable, Date().timeIntervalSince(killed) < 10 {
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        let reachable = await client.status().routerReachable
        XCTAssertFalse(reachable, "the client must notice a dead router")
        let restarted = Date()
        try cluster.start("router-2", ["router", "--frontend", cluster.frontend, "--backend", cluster.backend,
                                       "--model", cluster.model.path, "--gate", "rule", "--heartbeat-ms", "500"])
        try await cluster.waitForReplicas(client, emamba: 1, et5: 1, timeout: 10)
        let elapsed = Date().timeIntervalSince(restarted)
        XCTAssertLessThan(elapsed, 3.0, "experts took \(elapsed) s to re-register")
        print("RELIABILITY router-restart-reregister: experts registered \(String(format: "%.2f", elapsed)) s after the new router started")
        let answer = try await client.collect(question("after-restart", "What is gingivitis?", maxTokens: 8))
        XCTAssertNil(answer.error, cluster.allLogs())
        XCTAssertNotNil(answer.done)
    }

    /// Garbage on both router sockets is dropped and counted; the router keeps serving.
    func testGarbageFramesAreIgnored() async throws {
        let cluster = try ClusterHarness()
        let client = try await cluster.startCluster(gate: "rule", emamba: ["emamba-1"])
        defer { client.shutdown() }

        let context = try ZmqContext()
        var generator = SystemRandomNumberGenerator()
        var sent = 0
        for endpoint in [cluster.frontend, cluster.backend] {
            let socket = try ZmqSocket(context: context, type: .dealer)
            try socket.connect(endpoint)
            for i in 0..<200 {
                let size = Int.random(in: 0...300, using: &generator)
                var frame = (0..<size).map { _ in UInt8.random(in: 0...255, using: &generator) }
                if i % 3 == 0 { frame = Envelope(.heartbeat(Heartbeat())).encoded().dropLast() + [0xFF] }
                let frames = i % 5 == 0 ? [frame, frame] : [frame]
                if try socket.send(frames, dontWait: false) { sent += 1 }
            }
            try await Task.sleep(nanoseconds: 200_000_000)
            socket.close()
        }
        let answer = try await client.collect(question("after-garbage", "What is gingivitis?", maxTokens: 8))
        XCTAssertNil(answer.error, cluster.allLogs())
        XCTAssertNotNil(answer.done)
        XCTAssertTrue(cluster.processes["router"]!.isRunning)
        cluster.signal("router", SIGTERM)
        XCTAssertEqual(cluster.waitForExit("router"), 0)
        let log = cluster.log("router")
        let dropped = log.components(separatedBy: "malformed_frames=").dropFirst().first.flatMap { Int($0.prefix { $0.isNumber }) } ?? 0
        XCTAssertGreaterThan(dropped, 100, "router should count the garbage it dropped:\n\(log.suffix(2000))")
        print("RELIABILITY router-garbage: \(sent) garbage messages sent to frontend and backend, \(dropped) malformed frames counted, still serving")
        context.terminate()
    }
}
