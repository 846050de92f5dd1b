import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import XCTest
@testable import Gateway

final class AuthTests: XCTestCase {
    let token = "s3cret-token-0123456789"

    func testBearerTokenRequiredOnAPIButNotOnProbes() async throws {
        let backend = FakeBackend.simple()
        try await TestSupport.app(backend, { $0.authTokens = [self.token, "another-token-abcdefgh"] }).test(.router) { client in
            let none = try await TestSupport.post(client, "/v1/answer", #"{"question": "q"}"#)
            XCTAssertEqual(none.status, .unauthorized)
            XCTAssertEqual(none.headers[.wwwAuthenticate], "Bearer")
            XCTAssertEqual(try TestSupport.error(none).code, "unauthorized")

            let wrong = try await TestSupport.post(client, "/v1/answer", #"{"question": "q"}"#,
                                                   headers: [.authorization: "Bearer \(self.token)x"])
            XCTAssertEqual(wrong.status, .unauthorized)
            let basic = try await TestSupport.post(client, "/v1/chat/completions", "{}",
                                                   headers: [.authorization: "Basic \(self.token)"])
            XCTAssertEqual(basic.status, .unauthorized)

            let ok = try await TestSupport.post(client, "/v1/answer", #"{"question": "q"}"#,
                                                headers: [.authorization: "bearer \(self.token)"])
            XCTAssertEqual(ok.status, .ok)

            // Auth comes before parsing: an unauthenticated caller learns nothing about the API.
            let bad = try await TestSupport.post(client, "/v1/answer", "{not json")
            XCTAssertEqual(bad.status, .unauthorized)

            for probe in ["/healthz", "/readyz", "/metrics"] {
                let r = try await client.execute(uri: probe, method: .get)
                XCTAssertEqual(r.status, .ok, probe)
            }
        }
        XCTAssertEqual(backend.submitted.count, 1)
    }

    func testConstantTimeCompare() {
        XCTAssertTrue(AuthMiddleware.constantTimeEquals(Array("abc".utf8), Array("abc".utf8)))
        XCTAssertFalse(AuthMiddleware.constantTimeEquals(Array("abc".utf8), Array("abd".utf8)))
        XCTAssertFalse(AuthMiddleware.constantTimeEquals(Array("abc".utf8), Array("abcd".utf8)))
        XCTAssertFalse(AuthMiddleware.constantTimeEquals([], Array("a".utf8)))
        XCTAssertEqual(AuthMiddleware.bearerToken("Bearer  tok "), Array("tok".utf8))
        XCTAssertNil(AuthMiddleware.bearerToken("Bearer"))
        XCTAssertNil(AuthMiddleware.bearerToken("Token tok"))
    }

    func testTokenFileLoading() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gw-auth-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        /// Token files are secrets: written 0600, as the gateway insists.
        func write(_ text: String, _ url: URL, mode: Int = 0o600) throws {
            try text.write(to: url, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: url.path)
        }
        let good = dir.appendingPathComponent("tokens")
        try write("# clinic apps\n\nward-7-app-0123456789abcdef\n  lab-app-0123456789abcdef  \nehr-assistant:ehr-0123456789abcdef:x\n", good)
        XCTAssertEqual(try GatewayConfig.loadAuthTokens(path: good.path), [
            "ward-7-app-0123456789abcdef": GatewayConfig.defaultClientName("ward-7-app-0123456789abcdef"),
            "lab-app-0123456789abcdef": GatewayConfig.defaultClientName("lab-app-0123456789abcdef"),
            // name:token, split at the first colon; the token may hold colons.
            "ehr-0123456789abcdef:x": "ehr-assistant",
        ])
        XCTAssertTrue(GatewayConfig.defaultClientName("ward-7-app-0123456789abcdef").hasPrefix("token-"))
        XCTAssertEqual(GatewayConfig.defaultClientName("ward-7-app-0123456789abcdef").count, "token-".count + 8)

        // Readable by others: refused, with the fix.
        let open = dir.appendingPathComponent("open")
        try write("lab-app-0123456789abcdef\n", open, mode: 0o644)
        XCTAssertThrowsError(try GatewayConfig.loadAuthTokens(path: open.path)) {
            XCTAssertEqual($0 as? GatewayConfigError, .tokenFileTooOpen(path: open.path, mode: 0o644))
            XCTAssertTrue("\($0)".contains("chmod 600"))
        }
        let twice = dir.appendingPathComponent("twice")
        try write("lab:lab-app-0123456789abcdef\nlab:lab-app-fedcba9876543210\n", twice)
        XCTAssertThrowsError(try GatewayConfig.loadAuthTokens(path: twice.path)) {
            XCTAssertEqual($0 as? GatewayConfigError, .tokenFileInvalid(path: twice.path, line: 2, reason: "the name lab is used twice"))
        }

        let empty = dir.appendingPathComponent("empty")
        try write("# nothing\n", empty)
        XCTAssertThrowsError(try GatewayConfig.loadAuthTokens(path: empty.path)) {
            XCTAssertEqual($0 as? GatewayConfigError, .tokenFileEmpty(path: empty.path))
        }
        let short = dir.appendingPathComponent("short")
        try write("abc\n", short)
        XCTAssertThrowsError(try GatewayConfig.loadAuthTokens(path: short.path)) {
            XCTAssertEqual($0 as? GatewayConfigError,
                           .tokenFileInvalid(path: short.path, line: 1, reason: "token shorter than 16 characters (too easy to guess)"))
        }
        XCTAssertThrowsError(try GatewayConfig.loadAuthTokens(path: dir.appendingPathComponent("missing").path))
    }

    func testConfigValidation() {
        XCTAssertNoThrow(try GatewayConfig().validate())
        var c = GatewayConfig()
        c.defaultMaxTokens = c.maxTokens + 1
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("defaultMaxTokens")) }
    }

    /// Beyond loopback: tokens (or required client certificates) and TLS (or the opt-out).
    func testTransportSecurityBeyondLoopback() {
        var c = GatewayConfig(host: "0.0.0.0", port: 8443)
        c.authTokens = ["a-token-of-sixteen-chars"]
        XCTAssertThrowsError(try c.validate()) { XCTAssertEqual($0 as? GatewayConfigError, .plaintextBeyondLoopback(host: "0.0.0.0")) }
        c.allowPlaintextHTTP = true
        XCTAssertNoThrow(try c.validate())
        c.allowPlaintextHTTP = false
        c.tlsCert = "/etc/tls/gw.pem"
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("tls_cert and gateway.tls_key go together")) }
        c.tlsKey = "/etc/tls/gw.key"
        XCTAssertNoThrow(try c.validate())
        c.tlsRequireClientCert = true
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("needs gateway.tls_client_ca")) }
        // Required client certificates are a credential: no token file needed.
        c.tlsClientCA = "/etc/tls/ca.pem"
        c.authTokens = []
        XCTAssertFalse(c.isUnauthenticatedBeyondLoopback)
        XCTAssertNoThrow(try c.validate())
        c.tlsRequireClientCert = false
        XCTAssertThrowsError(try c.validate()) { XCTAssertEqual($0 as? GatewayConfigError, .unauthenticatedBeyondLoopback(host: "0.0.0.0")) }
        // On loopback plain HTTP stays the default.
        XCTAssertNoThrow(try GatewayConfig(host: "127.0.0.1", port: 8080).validate())
    }

    /// Files that do not load are refused with the setting's name, never served half-way.
    func testTLSFilesThatDoNotLoadAreNamed() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gw-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var c = GatewayConfig()
        c.tlsCert = dir.appendingPathComponent("missing.pem").path
        c.tlsKey = dir.appendingPathComponent("missing.key").path
        XCTAssertThrowsError(try GatewayTLS(c)) { XCTAssertTrue("\($0)".hasPrefix("gateway.tls_cert "), "\($0)") }
        let garbage = dir.appendingPathComponent("garbage.pem").path
        try "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n".write(toFile: garbage, atomically: true, encoding: .utf8)
        c.tlsCert = garbage
        XCTAssertThrowsError(try GatewayTLS(c)) { XCTAssertTrue("\($0)".hasPrefix("gateway.tls_cert "), "\($0)") }
    }
}
