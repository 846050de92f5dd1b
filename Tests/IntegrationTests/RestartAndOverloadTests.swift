import Foundation
import LoadGen
import Logging
import XCTest

/// Router restart and overload under the traffic generator (issue #12), on the same
/// cluster as the other fault tests. Both print their figures for RELIABILITY.md.
extension FaultTests {
    /// Open-loop load; the router is SIGKILLed and a new one started on the same
    /// endpoints. Promise (documented in RELIABILITY.md): the gateway does not retry; an
    /// answer in flight fails at once with a retryable 503 (the gateway sees the
    /// connection drop), new ones get 503 until the experts have re-registered, then
    /// every answer succeeds again. No request hangs: every one ends well inside its deadline.
    func testRouterRestartUnderLoadRecovers() async throws {
        let cluster = try startCluster()
        defer { cluster.harness.stopAll() }
        let harness = cluster.harness

        let (runner, log) = try openLoop(cluster, rate: 6, seconds: 18, maxInFlight: 64, seed: 7)

        let fault = Task.detached { () throws -> (killed: UInt64, restarted: UInt64) in
            try await Task.sleep(nanoseconds: 5_000_000_000)
            let killed = monotonicNs()
            harness.signal("router", SIGKILL)
            _ = harness.waitForExit("router")
            try await Task.sleep(nanoseconds: 1_000_000_000)
            try harness.startRouter(gate: "alternate", spanTokens: 4, name: "router-2")
            return (killed, monotonicNs())
        }
        let report = try await runner.run()
        let (killed, restarted) = try await fault.value
        let outcomes = log.all.sorted { $0.intendedNs < $1.intendedNs }

        // Only retryable 503s; no timeout, no broken response, nothing else.
        let failures = outcomes.filter { !$0.ok }
        for f in failures {
            XCTAssertEqual(f.errorClass, .http5xx, "\(f.detail)\n\(harness.allLogs())")
            XCTAssertEqual(f.code, "unavailable", f.detail)
        }
        XCTAssertGreaterThan(failures.count, 0, "the restart went unnoticed: was the router really killed?")
        XCTAssertEqual(report.errors, failures.count)
        // Nothing hangs: every request ends within 5 s of its send (deadline 60 s, client timeout 30 s).
        let slowest = outcomes.map { Double($0.endNs &- $0.intendedNs) / 1e9 }.max() ?? 0
        XCTAssertLessThan(slowest, 5, "a request hung across the restart")
        // Requests in flight when the router died: they end (as 503) quickly, not at the deadline.
        let inFlight = outcomes.filter { $0.intendedNs < killed && $0.endNs > killed }
        let inFlightEnd = inFlight.map { Double($0.endNs - killed) / 1e9 }.max() ?? 0
        XCTAssertLessThan(inFlightEnd, 2, "answers in flight at the kill must fail fast")

        // Recovery: the first request after which every later one succeeded.
        guard let lastFailure = outcomes.lastIndex(where: { !$0.ok }) else { return }
        let recovered = outcomes[(lastFailure + 1)...]
        let recoverySeconds = recovered.first.map { Double(Int64($0.intendedNs) - Int64(restarted)) / 1e9 } ?? .infinity
        XCTAssertGreaterThanOrEqual(recovered.count, 20, "load did not recover before the run ended\n\(harness.allLogs())")
        XCTAssertLessThan(recoverySeconds, 8, "recovery took too long\n\(harness.allLogs())")
        print("""
            RELIABILITY router-restart: sent \(report.sent), ok \(report.ok), failed \(failures.count) (all 503 unavailable), \
            in flight at the kill \(inFlight.count) ended within \(String(format: "%.2f", inFlightEnd)) s, \
            slowest request \(String(format: "%.2f", slowest)) s, recovered \(String(format: "%.2f", recoverySeconds)) s \
            after the restart (\(String(format: "%.2f", Double(restarted - killed) / 1e9)) s after the kill), \
            \(recovered.count) answers after that all ok
            """)
    }

    /// Capacity measured first (closed loop at the gateway's limit), then an open-loop
    /// Poisson load at 3× that rate. Promise: the admitted answers keep a latency close
    /// to the at-capacity one, the rest get 429 at once, nothing else fails, and no
    /// process grows its memory.
    func testOverloadAtThreeTimesCapacityRefusesFastAndStaysBounded() async throws {
        let limit = 4
        let cluster = try startCluster(maxConcurrent: limit)
        defer { cluster.harness.stopAll() }
        let harness = cluster.harness
        let names = ["gateway", "router", "emamba-1", "emamba-2", "et5-1", "et5-2"]

        var closed = LoadPlan(target: cluster.base, mode: .closed(concurrency: limit))
        closed.maxRequests = 80
        closed.maxTokens = ValueRange(Double(Self.maxTokens))
        closed.seed = 11
        let capacityReport = try await LoadRunner(plan: closed, workload: try Workload(prompts: prompts), logger: quietLogger()).run()
        XCTAssertEqual(capacityReport.errors, 0, "\(capacityReport.errorSamples)")
        let capacity = capacityReport.throughput.okPerSecond
        let before = names.map { harness.residentMiB($0) ?? 0 }

        let (runner, log) = try openLoop(cluster, rate: 3 * capacity, seconds: 10, maxInFlight: 512, seed: 12)
        let report = try await runner.run()
        let after = names.map { harness.residentMiB($0) ?? 0 }
        let outcomes = log.all

        let admitted = outcomes.filter(\.ok).map(\.latencySeconds).sorted()
        let refused = outcomes.filter { $0.errorClass == .http429 }.map(\.latencySeconds).sorted()
        let other = outcomes.filter { !$0.ok && $0.errorClass != .http429 }
        XCTAssertTrue(other.isEmpty, "only 429s under overload: \(other.prefix(3).map(\.detail))\n\(harness.allLogs())")
        XCTAssertGreaterThan(refused.count, outcomes.count / 3, "3× capacity must be refused in part")
        XCTAssertGreaterThan(admitted.count, 0)
        let capacityP99 = capacityReport.latencyMs.p99 / 1000
        let admittedP99 = percentile(admitted, 0.99), refusedP50 = percentile(refused, 0.5), refusedP99 = percentile(refused, 0.99)
        XCTAssertLessThan(admittedP99, 2 * capacityP99 + 0.5, "admitted answers must keep the at-capacity latency")
        XCTAssertLessThan(refusedP50, 0.05, "a 429 must be immediate")
        XCTAssertLessThan(refusedP99, 0.5, "a 429 must be immediate")
        for (i, name) in names.enumerated() {
            XCTAssertGreaterThan(after[i], 0, "\(name) died under overload\n\(harness.log(name))")
            XCTAssertLessThan(after[i], before[i] * 1.25 + 16, "\(name) grew from \(before[i]) to \(after[i]) MiB")
        }
        let rss = names.indices.map { "\(names[$0]) \(Int(before[$0]))→\(Int(after[$0]))" }.joined(separator: ", ")
        print("""
            RELIABILITY overload: capacity \(String(format: "%.1f", capacity)) answers/s (limit \(limit), p99 \
            \(String(format: "%.0f", capacityP99 * 1000)) ms); offered \(String(format: "%.1f", 3 * capacity))/s for 10 s: \
            sent \(report.sent), admitted \(admitted.count) (p50 \(ms(percentile(admitted, 0.5))) p99 \(ms(admittedP99)) ms), \
            429 \(refused.count) (p50 \(ms(refusedP50)) p99 \(ms(refusedP99)) ms), other errors \(other.count); RSS MiB \(rss)
            """)
    }

    /// Poisson arrivals at `rate` for `seconds`; every outcome lands in the returned log.
    private func openLoop(_ cluster: Cluster, rate: Double, seconds: Double, maxInFlight: Int, seed: UInt64)
        throws -> (LoadRunner, OutcomeLog)
    {
        var plan = LoadPlan(target: cluster.base, mode: .open(schedule: .constant(rate), maxInFlight: maxInFlight))
        plan.durationSeconds = seconds
        plan.maxTokens = ValueRange(Double(Self.maxTokens))
        plan.timeoutSeconds = 30
        plan.seed = seed
        let log = OutcomeLog()
        let runner = LoadRunner(plan: plan, workload: try Workload(prompts: prompts), logger: quietLogger())
        runner.onOutcome = { _, outcome in log.add(outcome) }
        return (runner, log)
    }

    private func quietLogger() -> Logger {
        var logger = Logger(label: "test.loadgen")
        logger.logLevel = .warning
        return logger
    }

    private func percentile(_ sorted: [Double], _ q: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * q).rounded()))]
    }

    private func ms(_ seconds: Double) -> String { String(format: "%.0f", seconds * 1000) }
}

/// What the tests keep of each outcome, filled from the load generator's tasks.
private final class OutcomeLog: @unchecked Sendable {
    struct Entry {
        var intendedNs: UInt64, endNs: UInt64
        var ok: Bool
        var errorClass: ErrorClass?
        var code: String?
        var detail: String
        var latencySeconds: Double { Double(endNs &- intendedNs) / 1e9 }
    }

    private let lock = NSLock()
    private var entries: [Entry] = []

    func add(_ outcome: RequestOutcome) {
        var entry = Entry(intendedNs: outcome.intendedNs, endNs: outcome.endNs, ok: true, errorClass: nil, code: nil, detail: "")
        if case .failed(let kind, let code, let detail) = outcome.result {
            entry.ok = false; entry.errorClass = kind; entry.code = code; entry.detail = detail
        }
        lock.withLock { entries.append(entry) }
    }

    var all: [Entry] { lock.withLock { entries } }
}
