import ClusterConfig
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Wire
import XCTest
@testable import Gateway

/// A clock the test moves by hand.
final class ManualClock: @unchecked Sendable {
    private let lock = NSLock()
    private var ns: UInt64 = 1_000_000_000
    var now: UInt64 { lock.withLock { ns } }
    func advance(seconds: Double) { lock.withLock { ns += UInt64(seconds * 1e9) } }
}

final class ClientQuotaTests: XCTestCase {
    func testRequestsPerMinuteRefillAndRetryAfter() throws {
        let clock = ManualClock()
        let quotas = ClientQuotas([ClientLimits(name: "triage", rpm: 6)], now: { clock.now })
        for _ in 0..<6 {
            guard case .admitted(let p) = quotas.admit(client: "triage", maxTokens: 10) else { return XCTFail("refused too early") }
            p.end(generated: 10)
        }
        guard case .refused(let r) = quotas.admit(client: "triage", maxTokens: 10) else { return XCTFail("not refused") }
        XCTAssertEqual(r.limit, "rpm")
        XCTAssertEqual(r.retryAfter, 10, "6 a minute: one every 10 s")
        clock.advance(seconds: 9.5)
        guard case .refused(let again) = quotas.admit(client: "triage", maxTokens: 10) else { return XCTFail("not refused") }
        XCTAssertEqual(again.retryAfter, 1)
        clock.advance(seconds: 0.5)
        guard case .admitted = quotas.admit(client: "triage", maxTokens: 10) else { return XCTFail("not refilled") }
        // Other clients and anonymous requests are not limited by it.
        guard case .unlimited = quotas.admit(client: "ehr", maxTokens: 10) else { return XCTFail() }
        guard case .unlimited = quotas.admit(client: nil, maxTokens: 10) else { return XCTFail() }
    }

    func testTokensAreReservedAndTheUnusedPartReturned() throws {
        let clock = ManualClock()
        let quotas = ClientQuotas([ClientLimits(name: "notebook", tpm: 600)], now: { clock.now })
        guard case .admitted(let a) = quotas.admit(client: "notebook", maxTokens: 400) else { return XCTFail() }
        // 200 left: a second request for 400 must wait until 200 more refill (10 tokens/s → 20 s).
        guard case .refused(let r) = quotas.admit(client: "notebook", maxTokens: 400) else { return XCTFail("overdrawn") }
        XCTAssertEqual(r.limit, "tpm")
        XCTAssertEqual(r.retryAfter, 20)
        // The first answer used only 50 of its 400: 350 come back, so 550 are there now.
        a.end(generated: 50)
        guard case .admitted(let b) = quotas.admit(client: "notebook", maxTokens: 400) else { return XCTFail("unused tokens not returned") }
        b.end(generated: 400)
        guard case .refused = quotas.admit(client: "notebook", maxTokens: 400) else { return XCTFail() }
        // More than the whole quota can never pass: a different answer (422), not a wait.
        guard case .impossible(let tpm) = quotas.admit(client: "notebook", maxTokens: 601) else { return XCTFail() }
        XCTAssertEqual(tpm, 600)
    }

    func testConcurrencyLimitAndRefund() throws {
        let quotas = ClientQuotas([ClientLimits(name: "ehr", rpm: 2, maxConcurrent: 1)])
        guard case .admitted(let a) = quotas.admit(client: "ehr", maxTokens: 1) else { return XCTFail() }
        guard case .refused(let r) = quotas.admit(client: "ehr", maxTokens: 1) else { return XCTFail() }
        XCTAssertEqual(r.limit, "max_concurrent")
        // Refunded (the cluster refused it): neither the slot nor the request counts.
        a.refund()
        a.end(generated: 1)   // settles once only
        guard case .admitted(let b) = quotas.admit(client: "ehr", maxTokens: 1) else { return XCTFail() }
        b.end(generated: 1)
        guard case .admitted(let c) = quotas.admit(client: "ehr", maxTokens: 1) else { return XCTFail("a refund still counted against rpm") }
        c.end(generated: 1)
        guard case .refused(let d) = quotas.admit(client: "ehr", maxTokens: 1) else { return XCTFail() }
        XCTAssertEqual(d.limit, "rpm")
    }

    func testReloadKeepsLevelsOfClientsThatStay() throws {
        let clock = ManualClock()
        let quotas = ClientQuotas([ClientLimits(name: "a", rpm: 2), ClientLimits(name: "b", rpm: 1)], now: { clock.now })
        for _ in 0..<2 { if case .admitted(let p) = quotas.admit(client: "a", maxTokens: 1) { p.end(generated: 1) } }
        guard case .refused = quotas.admit(client: "a", maxTokens: 1) else { return XCTFail() }
        // A reload cannot be used to reset a bucket; a removed client is no longer limited.
        quotas.replace([ClientLimits(name: "a", rpm: 4)])
        guard case .refused = quotas.admit(client: "a", maxTokens: 1) else { return XCTFail("reload refilled the bucket") }
        guard case .unlimited = quotas.admit(client: "b", maxTokens: 1) else { return XCTFail() }
        XCTAssertEqual(quotas.names, ["a"])
        // Removing a table and adding it back is no way to reset it either.
        quotas.replace([])
        guard case .unlimited = quotas.admit(client: "a", maxTokens: 1) else { return XCTFail() }
        quotas.replace([ClientLimits(name: "a", rpm: 4)])
        guard case .refused = quotas.admit(client: "a", maxTokens: 1) else { return XCTFail("a removed and re-added table started full") }
    }

    func testClientsTablesInTheConfigFile() throws {
        let good = try ConfigFile(text: """
            [gateway]
            listen = "127.0.0.1:8080"

            [[clients]]
            name = "ehr-assistant"
            rpm = 600
            tpm = 60000

            [[clients]]
            name = "notebook"
            max_concurrent = 2
            """, path: "c.toml")
        XCTAssertEqual(good.problems, [])
        XCTAssertEqual(good.clients, [ClientLimits(name: "ehr-assistant", rpm: 600, tpm: 60000),
                                      ClientLimits(name: "notebook", maxConcurrent: 2)])

        let bad = try ConfigFile(text: """
            [[clients]]
            name = "a b"

            [[clients]]
            name = "x"
            rmp = 5

            [[clients]]
            rpm = -1

            [[clients]]
            name = "x"
            """, path: "c.toml")
        let described = bad.problems.map(\.description)
        XCTAssertEqual(described.count, 4, "\(described)")
        XCTAssertTrue(described[0].hasPrefix("c.toml:1: clients[0].name"), described[0])
        XCTAssertTrue(described[1].contains("c.toml:4: clients[1].rmp: unknown setting (did you mean clients[1].rpm?)"), described[1])
        XCTAssertTrue(described[2].contains("c.toml:8: clients[2].rpm"), described[2])
        XCTAssertTrue(described[3].contains("c.toml:11: clients[3].name") && described[3].contains("already"), described[3])
        XCTAssertThrowsError(try ClusterConfig(file: bad, environment: [:], overrides: ConfigOverrides()))
    }

    /// Through the HTTP layer: the limited client gets 429 `quota_exceeded` (not `overloaded`)
    /// with `Retry-After`; the other client is unaffected; the counters say who and which limit.
    func testGatewayRefusesTheClientOverItsQuota() async throws {
        let backend = FakeBackend.simple()
        let metrics = GatewayMetrics()
        let limited = "limited-token-0123456789", free = "free-token-0123456789"
        let app = TestSupport.app(backend, metrics: metrics) {
            $0.authTokens = [limited, free]
            $0.clientNames = [limited: "limited", free: "free"]
            $0.clients = [ClientLimits(name: "limited", rpm: 2, tpm: 1000)]
        }
        try await app.test(.router) { client in
            func ask(_ token: String, maxTokens: Int = 8) async throws -> TestResponse {
                try await TestSupport.post(client, "/v1/answer", #"{"question": "q", "max_tokens": \#(maxTokens)}"#,
                                           headers: [.contentType: "application/json", .authorization: "Bearer \(token)"])
            }
            for _ in 0..<2 { let r = try await ask(limited); XCTAssertEqual(r.status, .ok) }
            let refused = try await ask(limited)
            XCTAssertEqual(refused.status, .tooManyRequests)
            XCTAssertEqual(try TestSupport.error(refused).code, "quota_exceeded")
            XCTAssertEqual(refused.headers[.retryAfter], "30", "2 a minute: the next in 30 s")
            let tooBig = try await ask(free, maxTokens: 200)
            XCTAssertEqual(tooBig.status, .ok)
            for _ in 0..<4 { let r = try await ask(free); XCTAssertEqual(r.status, .ok) }
        }
        let text = metrics.render()
        XCTAssertTrue(text.contains(#"mambaformer_gateway_quota_rejections_total{client="limited",limit="rpm"} 1"#), text)
        XCTAssertTrue(text.contains(#"mambaformer_gateway_requests_total{endpoint="/v1/answer",status="429",client="limited"} 1"#), text)
        XCTAssertTrue(text.contains(#"mambaformer_gateway_requests_total{endpoint="/v1/answer",status="200",client="free"} 5"#), text)
        XCTAssertTrue(text.contains(#"mambaformer_gateway_client_in_flight{client="limited"} 0"#), text)
        XCTAssertEqual(backend.submitted.count, 7)
    }

    /// A request the router refuses (overloaded) costs the client nothing, not even a request of its rpm.
    func testARequestTheClusterRefusesIsRefunded() async throws {
        let backend = FakeBackend.simple()
        backend.submitError = BackendSubmitError(code: .overloaded, message: "busy")
        let token = "limited-token-0123456789"
        let app = TestSupport.app(backend) {
            $0.authTokens = [token]; $0.clientNames = [token: "limited"]
            $0.clients = [ClientLimits(name: "limited", rpm: 1)]
        }
        try await app.test(.router) { client in
            for _ in 0..<3 {
                let r = try await TestSupport.post(client, "/v1/answer", #"{"question": "q"}"#,
                                                   headers: [.contentType: "application/json", .authorization: "Bearer \(token)"])
                XCTAssertEqual(try TestSupport.error(r).code, "overloaded", "the cluster's refusal, not the client's quota")
            }
        }
    }
}
