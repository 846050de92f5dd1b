import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Gateway
import LoadGen
import Logging
import Wire
import XCTest

/// Faults under load from the traffic generator (issue #12): real router, gateway and two
/// replicas per pool; the alternating gate puts every answer on both pools.
final class FaultTests: XCTestCase {
    static let maxTokens = 8

    struct Cluster {
        let harness: ClusterHarness
        let base: URL
    }

    func startCluster(maxConcurrent: Int = 16) throws -> Cluster {
        let harness = try ClusterHarness()
        try harness.startRouter(gate: "alternate", spanTokens: 4)
        for id in ["emamba-1", "emamba-2"] { try harness.startExpert("emamba", id: id) }
        for id in ["et5-1", "et5-2"] { try harness.startExpert("et5", id: id) }
        let port = ClusterHarness.freePort()
        try harness.start("gateway", ["gateway", "--listen", "127.0.0.1:\(port)", "--router", harness.frontend,
                                      "--max-concurrent", "\(maxConcurrent)", "--max-tokens", "256"])
        let base = URL(string: "http://127.0.0.1:\(port)")!
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if let data = try? Data(contentsOf: base.appendingPathComponent("readyz")),
               String(decoding: data, as: UTF8.self).contains("\"emamba\":2"), String(decoding: data, as: UTF8.self).contains("\"et5\":2") {
                return Cluster(harness: harness, base: base)
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
        XCTFail("cluster not ready\n\(harness.allLogs())")
        throw CancellationError()
    }

    var prompts: [Prompt] {
        ["What is gingivitis?", "What is a molar?", "What is a fever?", "What is insulin?", "What is a caries?",
         "What is the mandible?", "What is an abscess?", "What is a dentist?"].map { Prompt(question: $0) }
    }

    /// Runs `requests` answers with 4 clients; `onDone` sees the count of completed ones.
    func load(_ cluster: Cluster, requests: Int, onDone: @escaping @Sendable (Int) -> Void = { _ in })
        async throws -> (LoadReport, [Int: String])
    {
        try await runLoad(cluster.base, requests: requests, maxTokens: Self.maxTokens, seed: 5, prompts: prompts, onDone: onDone)
    }

    func testKillingAReplicaOfEachPoolUnderLoadLosesNothing() async throws {
        let cluster = try startCluster()
        defer { cluster.harness.stopAll() }
        let (cleanReport, clean) = try await load(cluster, requests: 200)
        XCTAssertEqual(cleanReport.ok, 200, "fault-free run: \(cleanReport.errorSamples)\n\(cluster.harness.allLogs())")

        let harness = cluster.harness
        let (report, faulted) = try await load(cluster, requests: 200) { done in
            if done == 40 { harness.signal("emamba-1", SIGKILL) }
            if done == 110 { harness.signal("et5-1", SIGKILL) }
        }
        XCTAssertNotNil(harness.waitForExit("emamba-1"))
        XCTAssertNotNil(harness.waitForExit("et5-1"))
        XCTAssertEqual(report.sent, 200)
        XCTAssertEqual(report.errors, 0, "\(report.errorsByClass) \(report.errorSamples)\n\(harness.allLogs())")
        XCTAssertEqual(faulted.count, 200)
        for (index, answer) in clean { XCTAssertEqual(faulted[index], answer, "answer \(index) changed after the faults") }
        XCTAssertGreaterThan(report.tokens.perExpert["emamba", default: 0], 0)
        XCTAssertGreaterThan(report.tokens.perExpert["et5", default: 0], 0)
        let identical = clean.filter { faulted[$0.key] == $0.value }.count
        print("RELIABILITY kill-replicas: sent \(report.sent), failed \(report.errors), identical answers \(identical)/\(clean.count), "
              + "p99 \(Int(report.latencyMs.p99)) ms (fault-free p99 \(Int(cleanReport.latencyMs.p99)) ms)")

        // Patient data: at the default log level no process writes a prompt or an answer.
        let logs = harness.allLogs()
        for prompt in prompts { XCTAssertFalse(logs.contains(prompt.question), "a log holds the prompt '\(prompt.question)'") }
        for answer in Set(clean.values) where answer.count >= 12 {
            XCTAssertFalse(logs.contains(answer), "a log holds the answer '\(answer)'")
        }
    }

    /// A rolling restart as systemd does it (SIGTERM one replica, wait for it to exit, start it
    /// again, wait until it is back, next), through every replica under load: the drains hand
    /// their spans back, nothing fails, every greedy answer is unchanged.
    func testRollingRestartUnderLoadLosesNothing() async throws {
        let cluster = try startCluster()
        defer { cluster.harness.stopAll() }
        let harness = cluster.harness
        let (cleanReport, clean) = try await load(cluster, requests: 240)
        XCTAssertEqual(cleanReport.ok, 240, "fault-free run: \(cleanReport.errorSamples)")

        let progress = Counter()
        let restarted = Counter()
        let replicas = [("emamba", "emamba-1"), ("emamba", "emamba-2"), ("et5", "et5-1"), ("et5", "et5-2")]
        let restarter = Thread {
            for (i, (kind, id)) in replicas.enumerated() {
                while progress.value < 20 + 50 * i { Thread.sleep(forTimeInterval: 0.01) }
                harness.signal(id, SIGTERM)
                guard harness.waitForExit(id, timeout: 20) == 0 else { return }
                // Back when the router has registered the new process (its log says so once more):
                // the gateway's replica counts lag by a heartbeat and could still show the old one.
                let registrations = harness.log("router").components(separatedBy: "replica=\(id)").count
                guard (try? harness.startExpert(kind, id: id)) != nil else { return }
                let deadline = Date().addingTimeInterval(30)
                while harness.log("router").components(separatedBy: "replica=\(id)").count == registrations, Date() < deadline {
                    Thread.sleep(forTimeInterval: 0.02)
                }
                guard Date() < deadline else { return }
                restarted.add()
            }
        }
        restarter.start()
        let (report, faulted) = try await load(cluster, requests: 240) { done in progress.set(done) }
        let deadline = Date().addingTimeInterval(60)
        while restarted.value < replicas.count, Date() < deadline { try await Task.sleep(nanoseconds: 50_000_000) }
        XCTAssertEqual(restarted.value, replicas.count, "the rolling restart did not complete\n\(harness.allLogs())")
        XCTAssertEqual(report.errors, 0, "\(report.errorsByClass) \(report.errorSamples)\n\(harness.allLogs())")
        for (index, answer) in clean { XCTAssertEqual(faulted[index], answer, "answer \(index) changed during the rolling restart") }
        print("RELIABILITY rolling-restart: 4 replicas restarted one by one under load: sent \(report.sent), failed \(report.errors), "
              + "p99 \(Int(report.latencyMs.p99)) ms (fault-free p99 \(Int(cleanReport.latencyMs.p99)) ms)")
    }

    /// SIGSTOP of a replica (hung, not dead) for longer than the heartbeat liveness: its
    /// spans move to the other replica, nothing fails, no text is duplicated (the late
    /// results it sends after SIGCONT are dropped), and it rejoins and serves again.
    func testHungReplicaIsBypassedAndRejoins() async throws {
        let cluster = try startCluster()
        defer { cluster.harness.stopAll() }
        let harness = cluster.harness
        let (_, clean) = try await load(cluster, requests: 60)

        let stopped = Date()
        let (report, faulted) = try await load(cluster, requests: 60) { done in
            if done == 10 { harness.signal("emamba-1", SIGSTOP) }
        }
        // Liveness is 3 × 500 ms; keep it stopped well past that before letting it go.
        let remaining = 2.5 - Date().timeIntervalSince(stopped)
        if remaining > 0 { try await Task.sleep(nanoseconds: UInt64(remaining * 1e9)) }
        harness.signal("emamba-1", SIGCONT)
        let resumed = Date()
        XCTAssertEqual(report.errors, 0, "\(report.errorsByClass) \(report.errorSamples)\n\(harness.allLogs())")
        for (index, answer) in clean { XCTAssertEqual(faulted[index], answer, "answer \(index) changed while a replica hung") }

        // It re-registers (it hears no router while stopped, reconnects, sends Ready) and serves again.
        let client = try harness.client()
        defer { client.shutdown() }
        try await harness.waitForReplicas(client, emamba: 1, et5: 2)
        let deadline = Date().addingTimeInterval(20)
        var served = false
        while !served, Date() < deadline {
            let answers = try await withThrowingTaskGroup(of: CollectedAnswer.self) { group in
                for i in 0..<8 {
                    group.addTask { try await client.collect(question("rejoin-\(UUID().uuidString.prefix(6))-\(i)", "What is a molar?",
                                                                    maxTokens: 4, forced: .emamba)) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            served = answers.contains { $0.spans.contains { $0.replicaId == "emamba-1" } }
            if !served { try await Task.sleep(nanoseconds: 300_000_000) }
        }
        XCTAssertTrue(served, "emamba-1 never served again after SIGCONT\n\(harness.log("emamba-1"))")
        let identical = clean.filter { faulted[$0.key] == $0.value }.count
        print("RELIABILITY sigstop: sent \(report.sent), failed \(report.errors), identical answers \(identical)/\(clean.count), "
              + "serving again \(String(format: "%.1f", Date().timeIntervalSince(resumed))) s after SIGCONT")
    }
}

extension FaultTests {
    /// SIGTERM to the gateway with answers in flight: they complete; meanwhile a new answer
    /// gets a retryable 503 `draining` and /readyz says draining; then the gateway exits 0.
    func testGatewaySigtermDrainsAnswersInFlight() async throws {
        let cluster = try startCluster()
        defer { cluster.harness.stopAll() }
        let url = cluster.base.appendingPathComponent("v1/answer")
        let (statuses, refused, probe) = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            // 5, not more: URLSession opens at most 6 connections per host, and the 6th is for the probe.
            for i in 0..<5 {
                group.addTask {
                    var request = URLRequest(url: url, timeoutInterval: 60)
                    request.httpMethod = "POST"
                    request.setValue("application/json", forHTTPHeaderField: "content-type")
                    request.httpBody = Data(#"{"question": "What is a molar? \#(i)", "max_tokens": 256}"#.utf8)
                    let (data, response) = try await URLSession.shared.data(for: request)
                    return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
                }
            }
            try await Task.sleep(nanoseconds: 150_000_000)  // the answers are under way (256 tokens each)
            cluster.harness.signal("gateway", SIGTERM)
            try await Task.sleep(nanoseconds: 100_000_000)
            let refused = try await answer(cluster.base, "What is a fever?")
            let (probeBody, probeResponse) = try await URLSession.shared.data(from: cluster.base.appendingPathComponent("readyz"))
            let probe = ((probeResponse as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: probeBody, as: UTF8.self))
            return (try await group.reduce(into: []) { $0.append($1) }, refused, probe)
        }
        for (status, body) in statuses {
            XCTAssertEqual(status, 200, "an answer in flight was cut by the drain: \(body)\n\(cluster.harness.log("gateway"))")
            XCTAssertTrue(body.contains(#""completion_tokens":256"#), body)
        }
        XCTAssertEqual(refused.status, 503, refused.body)
        XCTAssertTrue(refused.body.contains(#""draining""#), refused.body)
        XCTAssertEqual(probe.0, 503, probe.1)
        XCTAssertTrue(probe.1.contains(#""status":"draining""#), probe.1)
        XCTAssertEqual(cluster.harness.waitForExit("gateway", timeout: 30), 0, cluster.harness.log("gateway"))
        print("RELIABILITY gateway-sigterm: \(statuses.filter { $0.0 == 200 }.count)/\(statuses.count) answers in flight completed, "
              + "a new answer during the drain got \(refused.status) in \(Int(refused.seconds * 1000)) ms, exit 0")
    }
}

extension FaultTests {
    /// One POST /v1/answer: status, body and how long it took.
    func answer(_ base: URL, _ question: String, maxTokens: Int = 8) async throws -> (status: Int, body: String, seconds: Double) {
        var request = URLRequest(url: base.appendingPathComponent("v1/answer"), timeoutInterval: 60)
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "content-type")
        request.httpBody = Data(#"{"question": "\#(question)", "max_tokens": \#(maxTokens)}"#.utf8)
        let start = Date()
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self),
                Date().timeIntervalSince(start))
    }

    /// Every EMamba replica gone: answers fall back to ET5. Then every ET5 replica gone too:
    /// a 503 at once (not a hang until the deadline), and /readyz says not ready.
    func testPoolsGoneFallBackThenFailFast() async throws {
        let cluster = try startCluster()
        defer { cluster.harness.stopAll() }
        let harness = cluster.harness
        for id in ["emamba-1", "emamba-2"] { harness.signal(id, SIGKILL) }
        try await Task.sleep(nanoseconds: 2_500_000_000)  // past the router's liveness (3 × 500 ms)
        let fallback = try await answer(cluster.base, "What is a molar?")
        XCTAssertEqual(fallback.status, 200, fallback.body)
        XCTAssertTrue(fallback.body.contains(#""et5_tokens":8"#), "all tokens from the remaining pool: \(fallback.body)")

        for id in ["et5-1", "et5-2"] { harness.signal(id, SIGKILL) }
        try await Task.sleep(nanoseconds: 2_500_000_000)
        let refused = try await answer(cluster.base, "What is a molar?")
        XCTAssertEqual(refused.status, 503, refused.body)
        XCTAssertLessThan(refused.seconds, 2, "no replica: the answer must fail fast")
        var probe = URLRequest(url: cluster.base.appendingPathComponent("readyz"))
        probe.httpMethod = "GET"
        let (data, response) = try await URLSession.shared.data(for: probe)
        XCTAssertEqual((response as? HTTPURLResponse)?.statusCode, 503)
        XCTAssertTrue(String(decoding: data, as: UTF8.self).contains("not_ready"))
        print("RELIABILITY pools-gone: EMamba gone → \(fallback.status) from ET5 in \(Int(fallback.seconds * 1000)) ms; "
              + "both gone → \(refused.status) in \(Int(refused.seconds * 1000)) ms, /readyz 503")
    }
}

/// Answers by request index, filled from the load generator's tasks.
final class Answers: @unchecked Sendable {
    private let lock = NSLock()
    private var byIndex: [Int: String] = [:]
    private var done = 0

    /// Returns how many requests have completed.
    func add(_ index: Int, _ outcome: RequestOutcome) -> Int {
        lock.lock(); defer { lock.unlock() }
        if case .ok(let summary) = outcome.result { byIndex[index] = summary.text }
        done += 1
        return done
    }

    var all: [Int: String] { lock.lock(); defer { lock.unlock() }; return byIndex }
}

/// A number several threads read and one writes.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    var value: Int { lock.lock(); defer { lock.unlock() }; return n }
    func set(_ v: Int) { lock.lock(); n = max(n, v); lock.unlock() }
    func add() { lock.lock(); n += 1; lock.unlock() }
}
