import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import LoadGen
import XCTest

/// Two routers side by side (issue 17 of the guide): every expert serves both, the gateway
/// spreads answers over both and moves an answer whose router dies to the other one.
/// Real processes: two routers, two replicas per pool (capacity 2, shared by both routers),
/// one gateway; the alternating gate puts every answer on both pools.
final class SeveralRoutersTests: XCTestCase {
    static let maxTokens = 32   // eight 4-token spans: a kill lands mid-answer
    static let clients = 8

    struct Cluster {
        let harness: ClusterHarness
        let base: URL
        let port: Int
    }

    func startRouter(_ harness: ClusterHarness, _ n: Int) throws {
        try harness.startRouter(gate: "alternate", spanTokens: 4, extra: ["--metrics", "127.0.0.1:0"],
                                name: "router-\(n)", endpoints: harness.routerEndpoints(n))
    }

    func startCluster() throws -> Cluster {
        let harness = try ClusterHarness()
        for n in 1...2 { try startRouter(harness, n) }
        let backends = (1...2).map { harness.routerEndpoints($0).backend }
        for id in ["emamba-1", "emamba-2"] {
            try harness.startExpert("emamba", id: id, extra: ["--capacity", "2", "--metrics", "127.0.0.1:0"], routers: backends)
        }
        for id in ["et5-1", "et5-2"] {
            try harness.startExpert("et5", id: id, extra: ["--capacity", "2", "--metrics", "127.0.0.1:0"], routers: backends)
        }
        let port = ClusterHarness.freePort()
        try harness.start("gateway", ["gateway", "--listen", "127.0.0.1:\(port)", "--max-tokens", "256"]
                          + (1...2).flatMap { ["--router", harness.routerEndpoints($0).frontend] })
        let base = URL(string: "http://127.0.0.1:\(port)")!
        guard waitReady(base, routers: 2) else {
            XCTFail("cluster not ready\n\(harness.allLogs())")
            throw CancellationError()
        }
        return Cluster(harness: harness, base: base, port: port)
    }

    /// /readyz says ready with `routers` routers reachable and both replicas of each pool.
    func waitReady(_ base: URL, routers: Int, timeout: TimeInterval = 60) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let data = try? Data(contentsOf: base.appendingPathComponent("readyz")) {
                let body = String(decoding: data, as: UTF8.self)
                if body.contains(#""status":"ready""#), body.contains(#""reachable":\#(routers),"#),
                   body.contains(#""emamba":2"#), body.contains(#""et5":2"#) { return true }
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
        return false
    }

    var prompts: [Prompt] {
        ["What is gingivitis?", "What is a molar?", "What is a fever?", "What is insulin?", "What is a caries?",
         "What is the mandible?", "What is an abscess?", "What is a dentist?"].map { Prompt(question: $0) }
    }

    func metric(_ harness: ClusterHarness, _ name: String, _ series: String) throws -> Double {
        ClusterHarness.sample(try harness.scrapeMetrics(name), series) ?? 0
    }

    /// SIGKILL of one of two routers during 200 closed-loop streaming answers: nothing fails,
    /// every answer is the fault-free one (streamed: no gap, no duplicate). The killed router
    /// restarts, experts and the gateway rejoin it, and it takes new answers again.
    func testKillingOneOfTwoRoutersUnderLoadLosesNothing() async throws {
        let cluster = try startCluster()
        let harness = cluster.harness
        defer { harness.stopAll() }
        let (cleanReport, clean) = try await runLoad(cluster.base, requests: 200, maxTokens: Self.maxTokens, seed: 5, prompts: prompts,
                                                     concurrency: Self.clients)
        XCTAssertEqual(cleanReport.ok, 200, "fault-free run: \(cleanReport.errorSamples)\n\(harness.allLogs())")

        let (report, faulted) = try await runLoad(cluster.base, requests: 200, maxTokens: Self.maxTokens, seed: 5, prompts: prompts,
                                                  concurrency: Self.clients, stream: true) { done in
            if done == 60 { harness.signal("router-1", SIGKILL) }
        }
        XCTAssertNotNil(harness.waitForExit("router-1"))
        XCTAssertEqual(report.sent, 200)
        XCTAssertEqual(report.errors, 0, "\(report.errorsByClass) \(report.errorSamples)\n\(harness.allLogs())")
        XCTAssertEqual(faulted.count, 200)
        for (index, answer) in clean { XCTAssertEqual(faulted[index], answer, "answer \(index) changed across the router's death") }
        // The gateway logs each move with the spans the answer had: moved mid-answer is the point.
        let moves = harness.log("gateway").split(separator: "\n").filter { $0.contains("answer moved to another router") }
        let moved = moves.count
        let midAnswer = moves.filter { !$0.contains("spans_so_far=0") }.count
        XCTAssertGreaterThan(midAnswer, 0, "no answer was mid-way on the killed router: the test proved nothing\n\(harness.log("gateway"))")
        let resumed = try metric(harness, "router-2", "mambaformer_router_answers_resumed_total")
        XCTAssertEqual(Int(resumed), midAnswer, "router 2 continued every answer moved mid-way from where it was")

        // The killed router comes back on its endpoints: experts and the gateway rejoin it.
        try startRouter(harness, 1)
        XCTAssertTrue(waitReady(cluster.base, routers: 2), "router 1 rejoined\n\(harness.allLogs())")
        let (after, _) = try await runLoad(cluster.base, requests: 40, maxTokens: Self.maxTokens, seed: 6, prompts: prompts)
        XCTAssertEqual(after.ok, 40)
        let served = try metric(harness, "router-1", "mambaformer_router_requests_done_total")
        XCTAssertGreaterThan(served, 0, "the restarted router takes new answers again")

        // Shared replicas (capacity 2, two routers): no batch ever exceeded the capacity.
        var largest: [Double] = []
        for id in ["emamba-1", "emamba-2", "et5-1", "et5-2"] {
            let text = try harness.scrapeMetrics(id)
            let series = text.split(separator: "\n").first { $0.hasPrefix("mambaformer_expert_batch_size_max{") }
            largest.append(series.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0)
        }
        XCTAssertTrue(largest.allSatisfy { $0 <= 2 }, "a batch exceeded capacity 2: \(largest)")
        print("""
            RELIABILITY router-failover: 200 streaming answers (\(Self.clients) clients, \(Self.maxTokens) tokens), one of two routers SIGKILLed after 60: \
            \(report.ok) ok, \(report.errors) failed, \(moved) answers moved to the other router (\(midAnswer) mid-answer), all 200 identical to the \
            fault-free run; p50 \(Int(report.latencyMs.p50)) ms, p99 \(Int(report.latencyMs.p99)) ms, max \(Int(report.latencyMs.max)) ms \
            (fault-free p50 \(Int(cleanReport.latencyMs.p50)) ms, p99 \(Int(cleanReport.latencyMs.p99)) ms); \
            restarted router served \(Int(served)) of 40 new answers; largest batches \(largest) (capacity 2)
            """)
    }

    /// With both routers gone a request gets 503 at once and /readyz is not ready; with both
    /// back, the cluster serves again.
    func testBothRoutersDownFailsFastThenRecovers() async throws {
        let cluster = try startCluster()
        let harness = cluster.harness
        defer { harness.stopAll() }
        for n in 1...2 { harness.signal("router-\(n)", SIGKILL) }
        for n in 1...2 { XCTAssertNotNil(harness.waitForExit("router-\(n)")) }
        // The gateway notices a dropped connection at once (socket monitor).
        Thread.sleep(forTimeInterval: 0.5)
        let ask = RawHTTP.request("POST", "/v1/answer", headers: ["Content-Type: application/json"],
                                  body: Array(#"{"question":"What is a molar?","max_tokens":4}"#.utf8))
        let response = try RawHTTP.exchange(port: cluster.port, ask)
        XCTAssertEqual(response.status, 503, response.summary)
        XCTAssertLessThan(response.seconds, 1, "refused at once, not at the deadline")
        let ready = try RawHTTP.exchange(port: cluster.port, RawHTTP.request("GET", "/readyz"))
        XCTAssertEqual(ready.status, 503)
        XCTAssertTrue(ready.body.contains(#""reachable":0"#), ready.body)

        for n in 1...2 { try startRouter(harness, n) }
        XCTAssertTrue(waitReady(cluster.base, routers: 2), "both routers rejoined\n\(harness.allLogs())")
        let again = try RawHTTP.exchange(port: cluster.port, ask)
        XCTAssertEqual(again.status, 200, again.summary)
    }
}
