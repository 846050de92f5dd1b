@testable import LoadGen
import Random
import TestCommon
import XCTest

final class ReportTests: XCTestCase {
    let ms: UInt64 = 1_000_000
    let plan = LoadPlan(target: URL(string: "http://127.0.0.1:8080")!, mode: .closed(concurrency: 2))

    func ok(_ tokens: Int = 8) -> RequestOutcome.Result {
        .ok(AnswerSummary(finishReason: "length", completionTokens: tokens, tokensPerExpert: ["emamba": 6, "et5": 2],
                          spansPerExpert: ["emamba": 2, "et5": 1], switches: 2))
    }

    func testLatencyCountsFromTheIntendedSendTime() {
        // Coordinated omission: the request was due at 0 but the client could only send it at
        // 500 ms; it took 100 ms. Its latency is 600 ms (what a user arriving at 0 waited);
        // the service time is 100 ms.
        let stats = LoadStats(startNs: 0)
        stats.record(RequestOutcome(intendedNs: 0, sentNs: 500 * ms, endNs: 600 * ms, result: ok()))
        let r = stats.report(plan: plan, workload: "w", startedAt: Date(timeIntervalSince1970: 0))
        XCTAssertEqual(r.latencyMs.p50, 600, accuracy: 1)
        XCTAssertEqual(r.serviceTimeMs.p50, 100, accuracy: 0.5)
        let outcome = RequestOutcome(intendedNs: 10 * ms, sentNs: 30 * ms, endNs: 100 * ms,
                                     spans: [(50 * ms, 4), (70 * ms, 4)], result: ok())
        XCTAssertEqual(outcome.ttfsNs, 40 * ms, "time to first span also counts from the intended time")
    }

    func testPercentilesAreMonotoneAndCountsAddUp() {
        let stats = LoadStats(startNs: 0)
        var rng = SplitMix64(seed: 9)
        for i in 0..<5000 {
            // Log-normal-ish latencies, 1 ms … 10 s, plus some failures.
            let latency = UInt64(exp(rng.unit() * 9.2) * 1e6)
            stats.recordSent(at: UInt64(i) * ms)
            let result: RequestOutcome.Result = i % 50 == 0 ? .failed(.http5xx, code: "upstream_error", detail: "x") : ok()
            stats.record(RequestOutcome(intendedNs: UInt64(i) * ms, sentNs: UInt64(i) * ms,
                                        endNs: UInt64(i) * ms + latency, result: result))
        }
        let r = stats.report(plan: plan, workload: "w", startedAt: Date(timeIntervalSince1970: 0))
        XCTAssertEqual(r.sent, 5000)
        XCTAssertEqual(r.errors, 100)
        XCTAssertEqual(r.sent, r.ok + r.errors)
        XCTAssertEqual(r.errorsByClass.values.reduce(0, +), r.errors)
        XCTAssertEqual(r.errorCodes["http_5xx/upstream_error"], 100)
        let p = r.latencyMs
        XCTAssertEqual(p.count, r.ok)
        XCTAssertLessThanOrEqual(p.min, p.p50)
        XCTAssertLessThanOrEqual(p.p50, p.p90)
        XCTAssertLessThanOrEqual(p.p90, p.p99)
        XCTAssertLessThanOrEqual(p.p99, p.p999)
        XCTAssertLessThanOrEqual(p.p999, p.max)
        XCTAssertLessThan(p.p50, p.p99, "a spread distribution has distinct percentiles")
        for (a, b) in zip(r.latencyCDF, r.latencyCDF.dropFirst()) {
            XCTAssertLessThanOrEqual(a.ms, b.ms)
            XCTAssertLessThanOrEqual(a.fraction, b.fraction)
        }
        XCTAssertEqual(r.latencyCDF.last?.fraction, 1)
        XCTAssertEqual(r.tokens.perExpert, ["emamba": 6 * 4900, "et5": 2 * 4900])
        XCTAssertEqual(r.tokens.share["emamba"] ?? 0, 0.75, accuracy: 1e-9)
        XCTAssertEqual(r.timeseries.map(\.sent).reduce(0, +), 5000)
        XCTAssertEqual(r.timeseries.map { $0.ok + $0.errors }.reduce(0, +), 5000)
    }

    func sampleReport(rate: Double = 10, p99: Double = 200) -> LoadReport {
        let stats = LoadStats(startNs: 0)
        for i in 0..<20 {
            stats.recordSent(at: UInt64(i) * 100 * ms)
            stats.record(RequestOutcome(intendedNs: UInt64(i) * 100 * ms, sentNs: UInt64(i) * 100 * ms,
                                        endNs: UInt64(i) * 100 * ms + UInt64(50 + i * 5) * ms,
                                        spans: [(UInt64(i) * 100 * ms + 20 * ms, 4), (UInt64(i) * 100 * ms + 40 * ms, 4)],
                                        result: i == 3 ? .failed(.timeout, code: nil, detail: "slow") : ok()))
        }
        var r = stats.report(plan: plan, workload: "data/test.jsonl", startedAt: Date(timeIntervalSince1970: 1_700_000_000))
        r.throughput.requestsPerSecond = rate
        r.latencyMs.p99 = p99
        return r
    }

    func testReportJSONRoundTrips() throws {
        let r = sampleReport()
        XCTAssertNotNil(r.ttfsMs)
        XCTAssertEqual(r.perTokenMs?.p50 ?? 0, 5, accuracy: 0.1, "20 ms between spans of 4 tokens")
        let data = try r.json()
        let back = try LoadReport.decoder().decode(LoadReport.self, from: data)
        XCTAssertEqual(back, r)
        // The keys a capacity planner reads, as documented.
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        for key in ["sent", "ok", "errors", "errors_by_class", "throughput", "latency_ms", "ttfs_ms", "tokens", "timeseries"] {
            XCTAssertNotNil(object[key], key)
        }
        let latency = try XCTUnwrap(object["latency_ms"] as? [String: Any])
        for key in ["p50", "p90", "p99", "max"] { XCTAssertNotNil(latency[key], key) }
        let tokens = try XCTUnwrap(object["tokens"] as? [String: Any])
        XCTAssertEqual(tokens["per_expert"] as? [String: Int], ["emamba": 114, "et5": 38])
    }

    func testWriterProducesJSONAndOfflineHTML() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lg-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: dir) }
        let files = try ReportWriter.write(sampleReport(), to: dir)
        XCTAssertEqual(try LoadReport.load(files.json), sampleReport())
        let html = try String(contentsOf: files.html, encoding: .utf8)
        XCTAssertTrue(html.hasPrefix("<!DOCTYPE html>"))
        XCTAssertTrue(html.hasSuffix("</html>\n"))
        XCTAssertGreaterThanOrEqual(html.components(separatedBy: "<svg").count - 1, 5, "CDF, throughput, tokens, latency, routing")
        XCTAssertEqual(html.components(separatedBy: "<svg").count, html.components(separatedBy: "</svg>").count)
        for external in ["<script", "src=", "href=", "@import", "url("] {
            XCTAssertFalse(html.contains(external), "report.html must work offline: found \(external)")
        }
        XCTAssertTrue(html.contains("emamba: 114 tokens"))
    }

    func testHTMLEscapesText() {
        var r = sampleReport()
        r.workload = "<script>alert(1)</script>"
        XCTAssertFalse(HTMLReport.render(r).contains("<script>"))
    }

    func testCompareTableRatios() {
        let a = sampleReport(rate: 10, p99: 200)
        let b = sampleReport(rate: 20, p99: 100)
        let rows = CompareTable.rows(a, b)
        XCTAssertEqual(rows.first { $0.metric == "requests/s" }?.ratio, 2)
        XCTAssertEqual(rows.first { $0.metric == "latency p99 ms" }?.ratio, 0.5)
        XCTAssertEqual(rows.first { $0.metric == "ok" }?.ratio, 1)
        XCTAssertNotNil(rows.first { $0.metric == "emamba token share" })
        let text = CompareTable.render(a, b)
        XCTAssertTrue(text.contains("2.00x"), text)
        XCTAssertTrue(text.contains("0.50x"), text)
        XCTAssertEqual(Set(text.split(separator: "\n").dropFirst(2).map { $0.count }).count, 1, "aligned columns\n\(text)")
    }

    func testLoopbackCheck() throws {
        for ok in ["http://127.0.0.1:8080", "http://127.4.5.6", "http://[::1]:8080", "http://localhost:9"] {
            XCTAssertNoThrow(try TargetCheck.check(URL(string: ok)!, allowRemote: false), ok)
        }
        for remote in ["http://10.0.0.1:8080", "http://8.8.8.8", "http://[2001:db8::1]:80", "http://128.0.0.1"] {
            XCTAssertThrowsError(try TargetCheck.check(URL(string: remote)!, allowRemote: false), remote) { error in
                guard case LoadGenError.remoteTargetRefused = error else { return XCTFail("\(remote): \(error)") }
                XCTAssertTrue("\(error)".contains("--allow-remote"))
            }
            XCTAssertNoThrow(try TargetCheck.check(URL(string: remote)!, allowRemote: true), remote)
        }
        XCTAssertThrowsError(try TargetCheck.check(URL(string: "ftp://127.0.0.1")!, allowRemote: false))
        XCTAssertTrue(TargetCheck.isLoopback("::ffff:127.0.0.1"))
        XCTAssertFalse(TargetCheck.isLoopback("::ffff:10.0.0.1"))
        XCTAssertFalse(TargetCheck.isLoopback("::"))
    }

    func testRequestBodiesAreAFunctionOfSeedAndIndex() throws {
        let workload = try Workload(prompts: [
            Prompt(question: "q1"), Prompt(question: "q2"),
            Prompt(question: "r1", context: "c1"), Prompt(question: "r2", context: "c2"),
        ])
        var p = plan
        p.maxTokens = ValueRange(low: 4, high: 12)
        p.costWeight = ValueRange(low: 0.2, high: 0.8)
        XCTAssertEqual((0..<20).map { p.body($0, from: workload) }, (0..<20).map { p.body($0, from: workload) })
        var other = p
        other.seed = 2
        XCTAssertNotEqual((0..<20).map { p.body($0, from: workload) }, (0..<20).map { other.body($0, from: workload) })
        for i in 0..<50 {
            let body = p.body(i, from: workload)
            XCTAssertTrue((4...12).contains(body.maxTokens ?? 0))
            XCTAssertTrue((0.2...0.8).contains(body.costWeight ?? -1))
        }
        p.longShare = 1
        XCTAssertTrue((0..<30).allSatisfy { p.body($0, from: workload).context != nil })
        p.longShare = 0
        XCTAssertTrue((0..<30).allSatisfy { p.body($0, from: workload).context == nil })
        p.longShare = 0.5
        let long = (0..<2000).filter { p.body($0, from: workload).context != nil }.count
        XCTAssertEqual(Double(long), 1000, accuracy: 100)
    }

    func testWorkloadFileErrorsNameTheLine() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("lg-\(UUID().uuidString.prefix(8)).jsonl")
        defer { try? FileManager.default.removeItem(at: url) }
        try Data("{\"question\": \"a\"}\n\n{\"context\": \"no question\"}\n".utf8).write(to: url)
        XCTAssertThrowsError(try Workload(jsonl: url)) { error in
            XCTAssertEqual(error as? LoadGenError, .badWorkloadLine(path: url.path, line: 3, reason: "no \"question\" string"))
        }
        try Data("{\"question\": \"a\"}\n{\"question\": \"b\", \"context\": \"c\", \"answer\": \"x\"}\n".utf8).write(to: url)
        let w = try Workload(jsonl: url)
        XCTAssertEqual(w.short.count, 1)
        XCTAssertEqual(w.long.count, 1)
    }

    func testTheDemoDatasetLoads() throws {
        let w = try Workload(jsonl: TestPaths.repositoryRoot.appendingPathComponent("data/test.jsonl"))
        XCTAssertEqual(w.short.count + w.long.count, 859)
        XCTAssertGreaterThan(w.short.count, 0)
        XCTAssertGreaterThan(w.long.count, 0)
    }

    func testPlanValidation() {
        var p = plan
        p.maxRequests = nil
        XCTAssertThrowsError(try p.validate(), "needs a bound")
        p.maxRequests = 10
        XCTAssertNoThrow(try p.validate())
        p.mode = .closed(concurrency: 0)
        XCTAssertThrowsError(try p.validate())
        p.mode = .open(schedule: .constant(5), maxInFlight: 8)
        p.longShare = 1.5
        XCTAssertThrowsError(try p.validate())
        p.longShare = nil
        p.target = URL(string: "http://10.1.1.1:8080")!
        XCTAssertThrowsError(try p.validate())
        p.allowRemote = true
        XCTAssertNoThrow(try p.validate())
    }
}
