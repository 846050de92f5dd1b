import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import XCTest
@testable import Gateway

/// The door's parts on their own: the allow-list, the failed-token throttle (with a hand-held
/// clock), and the start-up refusal to listen beyond loopback without tokens.
final class DoorTests: XCTestCase {
    let token = "door-test-token-0123456789"

    func testCanonicalPathIsWhatTheRouterMatches() {
        XCTAssertEqual(AuthMiddleware.canonicalPath("//healthz/"), "/healthz")
        XCTAssertEqual(AuthMiddleware.canonicalPath("///v1//answer//"), "/v1/answer")
        XCTAssertEqual(AuthMiddleware.canonicalPath(""), "/")
        // Not undone: these match no route, so they stay behind the token.
        XCTAssertEqual(AuthMiddleware.canonicalPath("/./healthz"), "/./healthz")
        XCTAssertEqual(AuthMiddleware.canonicalPath("/%68ealthz"), "/%68ealthz")
    }

    func testMetricsNeedATokenWhenConfigured() async throws {
        try await TestSupport.app(FakeBackend.simple(), { $0.authTokens = [self.token]; $0.metricsAuth = true }).test(.router) { client in
            let bare = try await client.execute(uri: "/metrics", method: .get)
            XCTAssertEqual(bare.status, .unauthorized)
            let authorized = try await client.execute(uri: "/metrics", method: .get, headers: [.authorization: "Bearer \(self.token)"])
            XCTAssertEqual(authorized.status, .ok)
            for probe in ["/healthz", "/readyz"] {
                let response = try await client.execute(uri: probe, method: .get)
                XCTAssertEqual(response.status, .ok, probe)
            }
            // Only GET is a probe.
            let posted = try await client.execute(uri: "/healthz", method: .post)
            XCTAssertEqual(posted.status, .unauthorized)
        }
    }

    func testThrottleCountsFailuresPerAddressInOneMinuteWindows() {
        final class Clock: @unchecked Sendable { var ns: UInt64 = 1_000 }
        let clock = Clock()
        let throttle = AuthFailureThrottle(perMinute: 3, maxAddresses: 2, now: { clock.ns })
        for _ in 0..<3 { XCTAssertNil(throttle.blockedFor("10.0.0.1")); throttle.failed("10.0.0.1") }
        XCTAssertEqual(throttle.blockedFor("10.0.0.1"), 60)
        XCTAssertNil(throttle.blockedFor("10.0.0.2"), "another address is not affected")
        clock.ns += 45_000_000_000
        XCTAssertEqual(throttle.blockedFor("10.0.0.1"), 15)
        clock.ns += 15_000_000_000
        XCTAssertNil(throttle.blockedFor("10.0.0.1"), "a new window")
        // Bounded: a third address evicts the oldest window instead of growing the table.
        throttle.failed("10.0.0.2")
        throttle.failed("10.0.0.3")
        throttle.failed("10.0.0.4")
        XCTAssertNil(AuthFailureThrottle(perMinute: 0).blockedFor("x"), "0 = off")
    }

    func testListeningBeyondLoopbackNeedsTokensOrTheOptOut() throws {
        var config = GatewayConfig(host: "0.0.0.0", port: 0)
        config.allowPlaintextHTTP = true   // TLS is AuthTests.testTransportSecurityBeyondLoopback's
        XCTAssertThrowsError(try config.validate()) { error in
            XCTAssertEqual(error as? GatewayConfigError, .unauthenticatedBeyondLoopback(host: "0.0.0.0"))
            XCTAssertTrue("\(error)".contains("security.allow_unauthenticated"))
        }
        config.authTokens = [token]
        XCTAssertNoThrow(try config.validate())
        config.authTokens = []
        config.allowUnauthenticated = true
        XCTAssertNoThrow(try config.validate())
        for host in ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"] {
            XCTAssertTrue(GatewayConfig.isLoopback(host), host)
            XCTAssertNoThrow(try GatewayConfig(host: host, port: 0).validate(), host)
        }
        for host in ["0.0.0.0", "::", "10.1.2.3", "127.0.0.1.evil", "128.0.0.1", "localhost.example"] {
            XCTAssertFalse(GatewayConfig.isLoopback(host), host)
        }
    }

    func testAPromptIsMeasuredInBytes() async throws {
        // 400 × ﬃ is 400 characters but 1,200 bytes (and 1,200 letters after NFKC).
        let body = #"{"question": "What?", "context": "\#(String(repeating: "\u{FB03}", count: 400))"}"#
        try await TestSupport.app(FakeBackend.simple(), { $0.maxPromptBytes = 1000 }).test(.router) { client in
            let response = try await TestSupport.post(client, "/v1/answer", body)
            XCTAssertEqual(response.status, .unprocessableContent)
            let error = try TestSupport.error(response)
            XCTAssertEqual(error.code, "prompt_too_long")
            XCTAssertTrue(error.message.contains("1225 bytes; the limit is 1000"), error.message)
        }
    }
}
