import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Wire
import XCTest
@testable import Gateway

final class OperationsTests: XCTestCase {
    func testHealthAndReadiness() async throws {
        let backend = FakeBackend.simple()
        try await TestSupport.app(backend, { $0.readyRequiresPools = [.et5] }).test(.router) { client in
            let h = try await client.execute(uri: "/healthz", method: .get)
            XCTAssertEqual(h.status, .ok)
            XCTAssertEqual(TestSupport.text(h), "{\"status\":\"ok\"}\n")

            let ready = try await client.execute(uri: "/readyz", method: .get)
            XCTAssertEqual(ready.status, .ok)
            XCTAssertTrue(TestSupport.text(ready).contains(#""emamba":2"#))

            backend.setStatus(BackendStatus(routerReachable: false, emambaReplicas: 2, et5Replicas: 1))
            let unreachable = try await client.execute(uri: "/readyz", method: .get)
            XCTAssertEqual(unreachable.status, .serviceUnavailable)
            XCTAssertTrue(TestSupport.text(unreachable).contains("not_ready"))

            backend.setStatus(BackendStatus(routerReachable: true, emambaReplicas: 3, et5Replicas: 0))
            let noET5 = try await client.execute(uri: "/readyz", method: .get)
            XCTAssertEqual(noET5.status, .serviceUnavailable, "et5 is a required pool here")
        }
        XCTAssertTrue(BackendStatus(routerReachable: true, emambaReplicas: 1, et5Replicas: 0).isReady())
        XCTAssertFalse(BackendStatus(routerReachable: true, emambaReplicas: 0, et5Replicas: 0).isReady())
    }

    func testMetricsCountRequestsTokensAndLatency() async throws {
        let backend = FakeBackend.simple()
        let metrics = GatewayMetrics()
        try await TestSupport.app(backend, metrics: metrics).test(.router) { client in
            _ = try await TestSupport.post(client, "/v1/answer", #"{"question": "q"}"#)
            _ = try await TestSupport.post(client, "/v1/answer", #"{"question": "q", "stream": true}"#)
            _ = try await TestSupport.post(client, "/v1/answer", #"{"question": ""}"#)
            let r = try await client.execute(uri: "/metrics", method: .get)
            XCTAssertEqual(r.status, .ok)
            XCTAssertEqual(r.headers[.contentType], "text/plain; version=0.0.4; charset=utf-8")
            let text = TestSupport.text(r)
            for line in [
                #"mambaformer_gateway_requests_total{endpoint="/v1/answer",status="200"} 2"#,
                #"mambaformer_gateway_requests_total{endpoint="/v1/answer",status="422"} 1"#,
                #"mambaformer_gateway_tokens_total{expert="emamba"} 8"#,
                #"mambaformer_gateway_tokens_total{expert="et5"} 6"#,
                #"mambaformer_gateway_request_duration_seconds_count{endpoint="/v1/answer"} 3"#,
                #"mambaformer_gateway_first_span_seconds_count 2"#,
                #"mambaformer_gateway_answers_total{outcome="ok"} 2"#,
                "mambaformer_gateway_in_flight 0",
                "mambaformer_gateway_router_reachable 1",
                #"mambaformer_gateway_replicas{pool="emamba"} 2"#,
            ] {
                XCTAssertTrue(text.contains(line), "missing `\(line)` in\n\(text)")
            }
        }
    }

    /// More simultaneous requests than the limit: the excess gets 429 with Retry-After at once,
    /// the admitted ones complete, and the in-flight count returns to zero.
    func testBurstBeyondTheConcurrencyLimitGets429() async throws {
        let backend = FakeBackend.simple(delayMs: 150)
        let metrics = GatewayMetrics()
        let limit = 3, burst = 10
        try await TestSupport.app(backend, metrics: metrics, { $0.maxConcurrent = limit; $0.retryAfterSeconds = 2 })
            .test(.ahc(.http)) { client in
                let results = try await withThrowingTaskGroup(of: (HTTPResponse.Status, String?).self) { group in
                    for i in 0..<burst {
                        group.addTask {
                            let r = try await TestSupport.post(client, "/v1/answer",
                                                               #"{"question": "q", "stream": \#(i % 2 == 0)}"#)
                            return (r.status, r.headers[.retryAfter])
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                let ok = results.filter { $0.0 == .ok }.count
                let rejected = results.filter { $0.0 == .tooManyRequests }
                XCTAssertEqual(ok, limit, "\(results)")
                XCTAssertEqual(rejected.count, burst - limit)
                XCTAssertTrue(rejected.allSatisfy { $0.1 == "2" })
                // Capacity comes back once they finish.
                let again = try await TestSupport.post(client, "/v1/answer", #"{"question": "q"}"#)
                XCTAssertEqual(again.status, .ok)
            }
        XCTAssertTrue(metrics.render().contains("mambaformer_gateway_in_flight 0"))
        XCTAssertTrue(metrics.render().contains(#"mambaformer_gateway_requests_total{endpoint="/v1/answer",status="429"} 7"#))
    }

    /// During the drain an answer in flight completes, a new one gets a retryable 503
    /// `draining`, /readyz says draining, and the drain ends when nothing is in flight.
    func testDrainRefusesNewAnswersAndWaitsForThoseInFlight() async throws {
        let backend = FakeBackend.simple(delayMs: 300)
        let drain = GatewayDrain()
        try await TestSupport.app(backend, drain: drain).test(.ahc(.http)) { client in
            async let inFlight = TestSupport.post(client, "/v1/answer", #"{"question": "q"}"#)
            try await Task.sleep(for: .milliseconds(100))
            XCTAssertEqual(drain.inFlight, 1)
            drain.begin()
            let refused = try await TestSupport.post(client, "/v1/answer", #"{"question": "q"}"#)
            XCTAssertEqual(refused.status, .serviceUnavailable)
            XCTAssertEqual(try TestSupport.error(refused).code, "draining")
            XCTAssertNotNil(refused.headers[.retryAfter])
            let probe = try await client.execute(uri: "/readyz", method: .get)
            XCTAssertEqual(probe.status, .serviceUnavailable)
            XCTAssertTrue(TestSupport.text(probe).contains(#""status":"draining""#))
            let left = await drain.waitUntilIdle(timeout: .seconds(5))
            XCTAssertEqual(left, 0)
            let done = try await inFlight
            XCTAssertEqual(done.status, .ok, "the answer in flight must complete")
        }
    }

    /// The router keys work and `Cancel` by request id: two clients reusing one `X-Request-Id`
    /// at the same time must travel under distinct ids.
    func testConcurrentRequestsWithTheSameIdStayDistinct() async throws {
        let backend = FakeBackend.simple(delayMs: 100)
        try await TestSupport.app(backend).test(.ahc(.http)) { client in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<2 {
                    group.addTask {
                        let r = try await TestSupport.post(client, "/v1/answer", #"{"question": "q"}"#,
                                                           headers: [HTTPField.Name("X-Request-Id")!: "same-id"])
                        XCTAssertEqual(r.status, .ok)
                        XCTAssertEqual(r.headers[HTTPField.Name("X-Request-Id")!], "same-id")
                    }
                }
                try await group.waitForAll()
            }
        }
        let ids = backend.submitted.map(\.requestId)
        XCTAssertEqual(ids.count, 2)
        XCTAssertEqual(Set(ids).count, 2, "\(ids)")
        XCTAssertTrue(ids.allSatisfy { $0.hasPrefix("same-id") })
    }
}
