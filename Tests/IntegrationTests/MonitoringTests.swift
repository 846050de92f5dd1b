import Foundation
import TestCommon
import XCTest

/// The shipped monitoring (Deploy/prometheus/alerts.yml, Deploy/grafana/mambaformer.json) holds
/// against real nodes: promtool accepts the rules and every dashboard expression, every alert
/// has its runbook entry, and every metric name they use is exported by a live cluster's
/// router, experts, gateway or autoscaler (`scripts/check-monitoring.py`).
final class MonitoringTests: XCTestCase {
    func testAlertsAndDashboardUseOnlyExportedMetrics() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/promtool") else {
            // make test installs it (Debian's prometheus package, scripts/install-deps.sh).
            return XCTFail("promtool is not installed: run scripts/install-deps.sh")
        }
        let harness = try ClusterHarness()
        defer { harness.stopAll() }
        try harness.startRouter(gate: "alternate", spanTokens: 4, extra: ["--metrics", "127.0.0.1:0"])
        try harness.startExpert("emamba", id: "emamba-1", extra: ["--metrics", "127.0.0.1:0"])
        try harness.startExpert("et5", id: "et5-1", extra: ["--metrics", "127.0.0.1:0"])
        let port = ClusterHarness.freePort()
        // With an audit log, so that its metric is exported too.
        let key = harness.dir.appendingPathComponent("audit.key").path
        try String(repeating: "5a", count: 32).write(toFile: key, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: key)
        try harness.start("gateway", ["gateway", "--listen", "127.0.0.1:\(port)", "--router", harness.frontend],
                          environment: ["MAMBAFORMER_AUDIT_PATH": harness.dir.appendingPathComponent("audit.log").path,
                                        "MAMBAFORMER_AUDIT_HMAC_KEY_FILE": key])
        // The autoscaler outside systemd: it cannot list units (and says so), but it asks the
        // router and exports its metrics like the service does.
        try harness.start("autoscale", ["autoscale", "--routers", harness.frontend, "--metrics", "127.0.0.1:0"])
        XCTAssertTrue(RawHTTP.waitReady(port: port, emamba: 1, et5: 1), harness.allLogs())
        // One answer creates the per-answer series (durations, tokens per expert, outcomes).
        let ask = RawHTTP.request("POST", "/v1/answer", headers: ["Content-Type: application/json"],
                                  body: Array(#"{"question":"What is a molar?","max_tokens":8}"#.utf8))
        XCTAssertEqual(try RawHTTP.exchange(port: port, ask).status, 200)

        var files: [String] = []
        for name in ["router", "emamba-1", "et5-1", "autoscale"] {
            let file = harness.dir.appendingPathComponent("\(name).prom")
            try harness.scrapeMetrics(name).write(to: file, atomically: true, encoding: .utf8)
            files.append(file.path)
        }
        let gateway = try RawHTTP.exchange(port: port, RawHTTP.request("GET", "/metrics"))
        XCTAssertEqual(gateway.status, 200)
        let gatewayFile = harness.dir.appendingPathComponent("gateway.prom")
        try gateway.body.write(to: gatewayFile, atomically: true, encoding: .utf8)
        files.append(gatewayFile.path)

        let script = TestPaths.repositoryRoot.appendingPathComponent("scripts/check-monitoring.py").path
        let check = try runCommand("/usr/bin/python3", [script, "--promtool", "/usr/bin/promtool", "--metrics"] + files)
        XCTAssertEqual(check.status, 0, check.out + check.err)
        print(check.out.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
