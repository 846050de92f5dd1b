import Foundation
import TestCommon
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import LoadGen
import XCTest

/// `mambaformer loadgen` against a real local cluster (router, 1 EMamba + 1 ET5 replica with
/// --ignore-eos, gateway): counts add up, percentiles are monotone, report files are valid.
/// One cluster serves every test of the class (start-up is the slow part).
final class LoadGenClusterTests: XCTestCase {
    private static var cluster: ClusterHarness?
    private static var port = 0
    private static var startError: String?
    static let maxTokens = 8

    var base: URL { URL(string: "http://127.0.0.1:\(Self.port)")! }

    /// Starts the shared cluster once, before the first test.
    override func setUpWithError() throws {
        _ = try sharedCluster()
    }

    /// Starts the shared cluster on first use.
    func sharedCluster() throws -> ClusterHarness {
        if let cluster = Self.cluster { return cluster }
        if let error = Self.startError { XCTFail("the shared cluster did not start: \(error)"); throw CancellationError() }
        let cluster = try ClusterHarness()
        Self.cluster = cluster
        // Heartbeats of 2 s, not the harness's 0.5 s: these tests measure counting, not
        // liveness, and on a busy 2-core machine 0.5 s heartbeats can be missed.
        let heartbeat = ["--heartbeat-ms", "2000"]
        try cluster.start("router", ["router", "--frontend", cluster.frontend, "--backend", cluster.backend,
                                     "--model", cluster.model.path, "--gate", "alternate", "--span-tokens", "4"] + heartbeat)
        for (kind, id) in [("emamba", "emamba-1"), ("et5", "et5-1")] {
            try cluster.start(id, ["expert", "--kind", kind, "--model", cluster.model.path, "--router", cluster.backend,
                                   "--replica-id", id, "--ignore-eos"] + heartbeat)
        }
        Self.port = ClusterHarness.freePort()
        try cluster.start("gateway", ["gateway", "--listen", "127.0.0.1:\(Self.port)", "--router", cluster.frontend,
                                      "--max-concurrent", "16", "--max-tokens", "64"])
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if Self.status(URL(string: "http://127.0.0.1:\(Self.port)/readyz")!) == 200 { return cluster }
            Thread.sleep(forTimeInterval: 0.1)
        }
        Self.startError = "gateway not ready in 60 s"
        XCTFail("gateway not ready\n\(cluster.allLogs())")
        throw CancellationError()
    }

    override class func tearDown() {
        cluster?.stopAll()
        cluster = nil
    }

    /// GET status code, synchronously (0 when unreachable).
    static func status(_ url: URL) -> Int {
        let done = DispatchSemaphore(value: 0)
        var code = 0
        var request = URLRequest(url: url, timeoutInterval: 2)
        request.httpMethod = "GET"
        URLSession.shared.dataTask(with: request) { _, response, _ in
            code = (response as? HTTPURLResponse)?.statusCode ?? 0
            done.signal()
        }.resume()
        done.wait()
        return code
    }

    var workload: Workload {
        get throws { try Workload(jsonl: ClusterHarness.repositoryRoot.appendingPathComponent("data/test.jsonl")) }
    }

    func plan(_ mode: LoadPlan.Mode, requests: Int) -> LoadPlan {
        var plan = LoadPlan(target: base, mode: mode)
        plan.maxRequests = requests
        plan.maxTokens = ValueRange(Double(Self.maxTokens))
        plan.timeoutSeconds = 60
        plan.seed = 11
        // Short questions: debug-build experts spend seconds on a context's prefill, and
        // these tests check the load generator, not the model's speed.
        plan.longShare = 0
        return plan
    }

    /// What every real-cluster run must satisfy.
    func checkInvariants(_ r: LoadReport, sent: Int, openai: Bool = false, file: StaticString = #filePath, line: UInt = #line) {
        let context = "errors \(r.errorCodes) \(r.errorSamples)\n\(Self.cluster?.allLogs() ?? "")"
        XCTAssertEqual(r.sent, sent, file: file, line: line)
        XCTAssertEqual(r.sent, r.ok + r.errors, "sent = ok + errors", file: file, line: line)
        XCTAssertEqual(r.errorsByClass.values.reduce(0, +), r.errors, file: file, line: line)
        // Our client must understand every response of the real gateway, and reach it.
        XCTAssertEqual(r.errorsByClass["protocol"], 0, context, file: file, line: line)
        XCTAssertEqual(r.errorsByClass["connect"], 0, context, file: file, line: line)
        // A small cluster at this load serves everything; a few 5xx under a machine loaded by
        // other work are reported rather than hidden, but most requests must succeed.
        XCTAssertGreaterThanOrEqual(r.ok * 10, r.sent * 8, context, file: file, line: line)
        // --ignore-eos: every answer is exactly max_tokens long, split between the experts.
        XCTAssertEqual(r.tokens.completion, r.ok * Self.maxTokens, file: file, line: line)
        // The OpenAI API has no routing trace.
        XCTAssertEqual(r.tokens.perExpert.values.reduce(0, +), openai ? 0 : r.tokens.completion, file: file, line: line)
        XCTAssertEqual(r.finishReasons["length"], r.ok, file: file, line: line)
        let p = r.latencyMs
        XCTAssertEqual(p.count, r.ok, file: file, line: line)
        XCTAssertGreaterThan(p.min, 0, file: file, line: line)
        XCTAssertTrue(p.min <= p.p50 && p.p50 <= p.p90 && p.p90 <= p.p99 && p.p99 <= p.p999 && p.p999 <= p.max,
                      "percentiles monotone: \(p)", file: file, line: line)
        XCTAssertGreaterThan(r.throughput.requestsPerSecond, 0, file: file, line: line)
        XCTAssertEqual(r.timeseries.map(\.sent).reduce(0, +), r.sent, file: file, line: line)
        XCTAssertEqual(r.timeseries.map { $0.ok + $0.errors }.reduce(0, +), r.sent, file: file, line: line)
    }

    func testClosedLoopFourClientsThirtyRequests() async throws {
        let report = try await LoadRunner(plan: plan(.closed(concurrency: 4), requests: 30), workload: workload).run()
        checkInvariants(report, sent: 30)
        // The routing split names the cluster's experts (how much each gets depends on the
        // router's fallback when a pool is busy, so only the names and the sum are fixed).
        XCTAssertTrue(Set(report.tokens.perExpert.keys).isSubset(of: ["emamba", "et5"]), "\(report.tokens)")
        XCTAssertFalse(report.tokens.perExpert.isEmpty)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lg-it-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: dir) }
        let files = try ReportWriter.write(report, to: dir)
        let object = try JSONSerialization.jsonObject(with: try Data(contentsOf: files.json)) as? [String: Any]
        XCTAssertEqual(object?["sent"] as? Int, 30)
        XCTAssertEqual(try LoadReport.load(files.json), report)
        let html = try String(contentsOf: files.html, encoding: .utf8)
        XCTAssertTrue(html.contains("<svg") && html.hasSuffix("</html>\n"))
        XCTAssertFalse(html.contains("<script"))
    }

    func testOpenLoopAtALowRate() async throws {
        var p = plan(.open(schedule: .constant(4), maxInFlight: 64), requests: 12)
        p.longShare = 0.25      // a few prompts with a context, too
        let report = try await LoadRunner(plan: p, workload: workload).run()
        checkInvariants(report, sent: 12)
        XCTAssertEqual(report.mode, "open")
        // From the intended time, never less than from the actual send.
        XCTAssertGreaterThanOrEqual(report.latencyMs.p50, report.serviceTimeMs.p50)
        XCTAssertGreaterThanOrEqual(report.latencyMs.max, report.serviceTimeMs.max)
    }

    func testStreamingMeasuresTimeToFirstSpan() async throws {
        var p = plan(.closed(concurrency: 2), requests: 6)
        p.stream = true
        let report = try await LoadRunner(plan: p, workload: workload).run()
        checkInvariants(report, sent: 6)
        let ttfs = try XCTUnwrap(report.ttfsMs)
        XCTAssertEqual(ttfs.count, report.ok)
        XCTAssertLessThanOrEqual(ttfs.p50, report.latencyMs.p50)
        let perToken = try XCTUnwrap(report.perTokenMs, "two 4-token spans per answer give one gap each")
        XCTAssertEqual(perToken.count, report.ok * 4)
    }

    func testCommandLineWritesTheReport() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lg-cli-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = try Self.cli(["loadgen", "--url", base.absoluteString, "--concurrency", "2", "--requests", "6",
                                "--max-tokens", "\(Self.maxTokens)", "--seed", "3", "--long-share", "0", "--report", dir.path, "--quiet",
                                "--workload", ClusterHarness.repositoryRoot.appendingPathComponent("data/test.jsonl").path])
        XCTAssertEqual(run.status, 0, run.err)
        XCTAssertTrue(run.out.contains("sent 6"), run.out)
        let report = try LoadReport.load(dir.appendingPathComponent("report.json"))
        checkInvariants(report, sent: 6)
        let html = try String(contentsOf: dir.appendingPathComponent("report.html"), encoding: .utf8)
        XCTAssertTrue(html.contains("<svg"))

        let json = dir.appendingPathComponent("report.json").path
        let compare = try Self.cli(["loadgen", "--compare", json, json])
        XCTAssertEqual(compare.status, 0, compare.err)
        XCTAssertTrue(compare.out.contains("requests/s") && compare.out.contains("1.00x"), compare.out)

        let refused = try Self.cli(["loadgen", "--url", "http://10.255.255.1:8080", "--requests", "1"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.err.contains("--allow-remote"), refused.err)
    }

    /// `--api openai` against the gateway's own `/v1/chat/completions`: the same counts as the
    /// native API, time to first token from the stream, the model from `GET /v1/models`.
    func testOpenAIAPIAgainstTheGatewaysChatEndpoint() async throws {
        for stream in [false, true] {
            var p = plan(.closed(concurrency: 2), requests: 6)
            p.api = .openai
            p.stream = stream
            let report = try await LoadRunner(plan: p, workload: workload).run()
            checkInvariants(report, sent: 6, openai: true)
            XCTAssertEqual(report.api, "openai")
            XCTAssertEqual(report.model, "mambaformer", "the first id of the gateway's /v1/models")
            XCTAssertGreaterThan(report.tokens.prompt, 0, "usage counted")
            if stream {
                let ttft = try XCTUnwrap(report.ttfsMs, "time to first token from the stream")
                XCTAssertEqual(ttft.count, report.ok)
                XCTAssertLessThanOrEqual(ttft.p50, report.latencyMs.p50)
                XCTAssertNotNil(report.perTokenMs, "two spans per answer: at least one gap")
            } else {
                XCTAssertNil(report.ttfsMs)
            }
        }
        let run = try Self.cli(["loadgen", "--api", "openai", "--url", base.absoluteString, "--stream", "--concurrency", "2",
                                "--requests", "4", "--max-tokens", "\(Self.maxTokens)", "--long-share", "0", "--quiet",
                                "--workload", ClusterHarness.repositoryRoot.appendingPathComponent("data/test.jsonl").path])
        XCTAssertEqual(run.status, 0, run.err)
        XCTAssertTrue(run.out.contains("sent 4 · ok 4") && run.out.contains("first token"), run.out)
    }

    static func cli(_ arguments: [String]) throws -> CommandRun {
        try runCommand(ClusterHarness.binary.path, arguments)
    }
}
