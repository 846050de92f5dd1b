import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Wire
import XCTest

/// `--metrics HOST:PORT` on the router and an expert: Prometheus text that counts what
/// the cluster just did.
final class MetricsTests: XCTestCase {
    func testRouterAndExpertExportWhatTheyDid() async throws {
        let cluster = try ClusterHarness()
        try cluster.startRouter(gate: "alternate", spanTokens: 4, extra: ["--metrics", "127.0.0.1:0"])
        try cluster.startExpert("emamba", id: "emamba-1", extra: ["--metrics", "127.0.0.1:0"])
        try cluster.startExpert("et5", id: "et5-1")
        let client = try cluster.client()
        defer { client.shutdown() }
        try await cluster.waitForReplicas(client, emamba: 1, et5: 1)

        let answer = try await client.collect(question("m-1", "What is gingivitis?", maxTokens: 12))
        XCTAssertNotNil(answer.done, "\(cluster.allLogs())")
        let emambaSpans = answer.spans.filter { $0.pool == .emamba }
        let emambaTokens = emambaSpans.reduce(0) { $0 + $1.pieces.count }

        let routerText = try await scrape(cluster, "router")
        XCTAssertEqual(sample(routerText, "mambaformer_router_replicas{pool=\"emamba\"}"), 1, routerText)
        XCTAssertEqual(sample(routerText, "mambaformer_router_replicas{pool=\"et5\"}"), 1)
        XCTAssertEqual(sample(routerText, "mambaformer_router_requests_done_total"), 1)
        XCTAssertEqual(sample(routerText, "mambaformer_router_spans_total{pool=\"emamba\"}"), Double(emambaSpans.count))
        XCTAssertEqual(sample(routerText, "mambaformer_router_tokens_total{pool=\"emamba\"}"), Double(emambaTokens))
        XCTAssertEqual(sample(routerText, "mambaformer_router_dispatch_overhead_seconds_count{pool=\"emamba\"}"),
                       Double(emambaSpans.count))

        let expertText = try await scrape(cluster, "emamba-1")
        let labels = "{pool=\"emamba\",replica=\"emamba-1\"}"
        XCTAssertEqual(sample(expertText, "mambaformer_expert_spans_total\(labels)"), Double(emambaSpans.count), expertText)
        XCTAssertEqual(sample(expertText, "mambaformer_expert_tokens_total\(labels)"), Double(emambaTokens))
        XCTAssertGreaterThan(sample(expertText, "mambaformer_expert_step_seconds_count\(labels)") ?? 0, 0)
    }

    func testABadMetricsAddressIsRefusedAtStart() throws {
        let cluster = try ClusterHarness()
        try cluster.startRouter(extra: ["--metrics", "no-port-here"])
        XCTAssertNotEqual(cluster.waitForExit("router"), 0)
        // Checked with the rest of the configuration (Deploy): names the flag and the rule.
        XCTAssertTrue(cluster.log("router").contains("flag --metrics: router.metrics: \"no-port-here\" is invalid: expected HOST:PORT"),
                      cluster.log("router"))
    }

    private func scrape(_ cluster: ClusterHarness, _ name: String) async throws -> String { try cluster.scrapeMetrics(name) }

    private func sample(_ text: String, _ series: String) -> Double? { ClusterHarness.sample(text, series) }
}
