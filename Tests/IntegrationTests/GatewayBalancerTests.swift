import Foundation
import LoadGen
import Logging
import XCTest

/// The HTTP entry without a single point of failure: two gateways behind HAProxy (Debian's
/// package, TCP mode, health-checked on `/readyz`), the documented way in (README, "Several
/// gateways"). One gateway killed under load: the answers in flight on it fail at once, with
/// an error a client retries; new answers go to the other gateway and succeed.
final class GatewayBalancerTests: XCTestCase {
    static let haproxy = URL(fileURLWithPath: "/usr/sbin/haproxy")

    /// Each request's outcome as the traffic generator saw it.
    final class Outcomes: @unchecked Sendable {
        private let lock = NSLock()
        private var all: [(sentNs: UInt64, endNs: UInt64, error: ErrorClass?)] = []
        func add(_ o: RequestOutcome) {
            var error: ErrorClass?
            if case .failed(let kind, _, _) = o.result { error = kind }
            lock.withLock { all.append((o.sentNs, o.endNs, error)) }
        }
        var entries: [(sentNs: UInt64, endNs: UInt64, error: ErrorClass?)] { lock.withLock { all } }
    }

    func testKillingOneOfTwoGatewaysBehindHAProxy() async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.haproxy.path) else {
            // make test installs it (scripts/install-deps.sh); a hand-run without it is a failure too.
            return XCTFail("haproxy is not installed: run scripts/install-deps.sh (Debian package haproxy)")
        }
        let harness = try ClusterHarness()
        defer { harness.stopAll() }
        try harness.startRouter(gate: "alternate", spanTokens: 4)
        try harness.startExpert("emamba", id: "emamba-1")
        try harness.startExpert("et5", id: "et5-1")
        let ports = [ClusterHarness.freePort(), ClusterHarness.freePort()]
        for (i, port) in ports.enumerated() {
            try harness.start("gateway-\(i + 1)", ["gateway", "--listen", "127.0.0.1:\(port)", "--router", harness.frontend])
        }
        for port in ports { XCTAssertTrue(RawHTTP.waitReady(port: port, emamba: 1, et5: 1), harness.allLogs()) }

        // TCP mode (the gateways speak HTTP/1.1 and SSE themselves); a gateway is out after one
        // failed /readyz check, and a connection refused by a dead one is sent to the other.
        let front = ClusterHarness.freePort()
        let config = harness.dir.appendingPathComponent("haproxy.cfg")
        try """
            global
                maxconn 512
            defaults
                mode tcp
                timeout connect 1s
                timeout client 60s
                timeout server 60s
                retries 3
                option redispatch
            frontend gateways
                bind 127.0.0.1:\(front)
                default_backend gateways
            backend gateways
                balance leastconn
                option httpchk GET /readyz
                http-check expect status 200
                default-server inter 300ms fall 1 rise 2
                server g1 127.0.0.1:\(ports[0]) check
                server g2 127.0.0.1:\(ports[1]) check

            """.write(to: config, atomically: true, encoding: .utf8)
        try harness.start("haproxy", ["-f", config.path, "-db"], binary: Self.haproxy)
        XCTAssertTrue(RawHTTP.waitReady(port: front, emamba: 1, et5: 1), harness.log("haproxy"))

        var plan = LoadPlan(target: URL(string: "http://127.0.0.1:\(front)")!, mode: .closed(concurrency: 4))
        plan.maxRequests = 200
        plan.maxTokens = ValueRange(32)
        plan.timeoutSeconds = 30
        plan.seed = 9
        var logger = Logger(label: "test.loadgen")
        logger.logLevel = .warning
        let prompts = ["What is gingivitis?", "What is a molar?", "What is insulin?", "What is a fever?"].map { Prompt(question: $0) }
        let runner = LoadRunner(plan: plan, workload: try Workload(prompts: prompts), logger: logger)
        let outcomes = Outcomes()
        let killedAt = LockedValue<UInt64>(0)
        let diedAt = LockedValue<UInt64>(0)
        let count = LockedValue<Int>(0)
        runner.onOutcome = { _, outcome in
            outcomes.add(outcome)
            if count.update({ $0 += 1; return $0 }) == 60 {
                killedAt.set(DispatchTime.now().uptimeNanoseconds)
                harness.signal("gateway-1", SIGKILL)
                // The kill is not instantaneous: the gateway serves until the kernel has taken it
                // down. What it accepted until then was in flight on it.
                Thread.detachNewThread {
                    _ = harness.waitForExit("gateway-1", timeout: 5)
                    diedAt.set(DispatchTime.now().uptimeNanoseconds)
                }
            }
        }
        let report = try await runner.run()
        let killed = killedAt.get()
        XCTAssertGreaterThan(killed, 0)
        let died = diedAt.get()
        XCTAssertGreaterThan(died, 0, "the gateway did not exit")

        let all = outcomes.entries
        let failed = all.filter { $0.error != nil }
        // Only answers in flight on the killed gateway fail: at most one per client, sent
        // before the kill, and they fail at once (the connection drops), not at a timeout.
        XCTAssertLessThanOrEqual(failed.count, 8, "only what was in flight on it: \(report.errorsByClass) \(report.errorSamples)")
        for f in failed {
            XCTAssertLessThan(f.sentNs, died, "a request sent after the gateway had died failed: \(report.errorSamples)")
            XCTAssertNotEqual(f.error, .timeout)
        }
        let failedWithin = failed.map { Double($0.endNs &- killed) / 1e9 }.max() ?? 0
        XCTAssertLessThan(failedWithin, 1, "in-flight answers fail fast")
        let after = all.filter { $0.sentNs > died }
        XCTAssertGreaterThan(after.count, 100)
        XCTAssertTrue(after.allSatisfy { $0.error == nil }, "every answer sent once the gateway is gone succeeds")
        print("""
            RELIABILITY gateway-behind-haproxy: 200 closed-loop answers (4 clients, 32 tokens) through HAProxy to two gateways, \
            one SIGKILLed after 60: \(report.ok) ok, \(failed.count) failed (in flight on it; \
            \(report.errorsByClass.filter { $0.value > 0 }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))), all within \
            \(String(format: "%.2f", failedWithin)) s of the kill; the gateway was gone \(String(format: "%.0f", Double(died - killed) / 1e6)) ms after SIGKILL; \
            \(after.count) answers sent after that all ok; \
            p99 \(Int(report.latencyMs.p99)) ms
            """)
    }
}

/// A value shared between the load's callbacks and the test.
final class LockedValue<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ value: T) { self.value = value }
    func get() -> T { lock.withLock { value } }
    func set(_ v: T) { lock.withLock { value = v } }
    func update<R>(_ body: (inout T) -> R) -> R { lock.withLock { body(&value) } }
}
