import Foundation
import TestCommon
import XCTest

/// HTTPS at the gateway with a test CA made by `openssl` at test time, checked with curl:
/// the CA makes a connection trusted, mTLS refuses clients without a certificate and names
/// those with one by their CN, and SIGHUP swaps the certificate without a restart.
final class GatewayTLSTests: XCTestCase {
    static let token = "tls-test-token-0123456789"

    /// A CA, a server certificate for localhost / 127.0.0.1, a client certificate with CN
    /// `name`, all in `dir` (the commands README's "Security and compliance" gives, as a test).
    static func makePKI(_ dir: URL, ca: String = "ca", server: String = "server", client: String = "client-1") throws {
        func openssl(_ arguments: [String]) throws {
            let run = try runCommand("/usr/bin/openssl", arguments)
            guard run.status == 0 else { throw NSError(domain: "openssl", code: Int(run.status), userInfo: [NSLocalizedDescriptionKey: run.err]) }
        }
        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-noenc"]
        try openssl(["req", "-x509"] + ec + ["-keyout", path("\(ca).key"), "-out", path("\(ca).pem"), "-days", "30",
                     "-subj", "/CN=Test CA \(ca)", "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        try "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            .write(toFile: path("server.ext"), atomically: true, encoding: .utf8)
        try openssl(["req", "-new"] + ec + ["-keyout", path("\(server).key"), "-out", path("\(server).csr"), "-subj", "/CN=localhost"])
        try openssl(["x509", "-req", "-in", path("\(server).csr"), "-CA", path("\(ca).pem"), "-CAkey", path("\(ca).key"),
                     "-CAcreateserial", "-days", "30", "-out", path("\(server).pem"), "-extfile", path("server.ext")])
        for key in ["\(ca).key", "\(server).key"] {
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path(key))
        }
        try makeClient(dir, ca: ca, file: client, commonName: client)
    }

    /// A client certificate with subject CN `commonName` from the CA `ca` in `dir`: FILE.pem, FILE.key.
    static func makeClient(_ dir: URL, ca: String = "ca", file: String, commonName: String) throws {
        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
        let run = { (arguments: [String]) throws in
            let r = try runCommand("/usr/bin/openssl", arguments)
            guard r.status == 0 else { throw NSError(domain: "openssl", code: Int(r.status), userInfo: [NSLocalizedDescriptionKey: r.err]) }
        }
        try "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
            .write(toFile: path("client.ext"), atomically: true, encoding: .utf8)
        try run(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-noenc", "-keyout", path("\(file).key"),
                 "-out", path("\(file).csr"), "-subj", "/O=Test/CN=\(commonName)"])
        try run(["x509", "-req", "-in", path("\(file).csr"), "-CA", path("\(ca).pem"), "-CAkey", path("\(ca).key"),
                 "-CAcreateserial", "-days", "30", "-out", path("\(file).pem"), "-extfile", path("client.ext")])
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path("\(file).key"))
    }

    /// curl's exit status and the body (`-s`: no progress; `-w`: the status code on its own line).
    static func curl(_ url: String, _ extra: [String]) throws -> (exit: Int32, status: Int?, body: String) {
        let run = try runCommand("/usr/bin/curl", ["-s", "--max-time", "20", "-w", "\n%{http_code}"] + extra + [url])
        let lines = run.out.split(separator: "\n", omittingEmptySubsequences: false)
        return (run.status, lines.last.flatMap { Int($0) }.flatMap { $0 == 0 ? nil : $0 }, lines.dropLast().joined(separator: "\n"))
    }

    func waitHealthy(_ port: Int, _ extra: [String], harness: ClusterHarness, _ name: String) {
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if (try? Self.curl("https://localhost:\(port)/readyz", extra))?.status == 200 { return }
            Thread.sleep(forTimeInterval: 0.1)
        }
        XCTFail("gateway not ready over HTTPS\n\(harness.log(name))")
    }

    func testHTTPSWithATestCAClientCertificatesAndReload() throws {
        let harness = try ClusterHarness()
        defer { harness.stopAll() }
        let pki = harness.dir.appendingPathComponent("pki")
        try FileManager.default.createDirectory(at: pki, withIntermediateDirectories: true)
        try Self.makePKI(pki)
        func file(_ name: String) -> String { pki.appendingPathComponent(name).path }
        let tokens = harness.dir.appendingPathComponent("tokens").path
        try "\(Self.token)\n".write(toFile: tokens, atomically: true, encoding: .utf8)   // a bare token: no name of its own
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: tokens)

        try harness.startRouter()
        try harness.startExpert("emamba", id: "emamba-1")
        try harness.startExpert("et5", id: "et5-1")
        let port = ClusterHarness.freePort()
        let tls = ["--tls-cert", file("server.pem"), "--tls-key", file("server.key"), "--tls-client-ca", file("ca.pem")]
        try harness.start("gateway", ["gateway", "--listen", "127.0.0.1:\(port)", "--router", harness.frontend,
                                      "--auth-tokens-file", tokens] + tls)
        let trusted = ["--cacert", file("ca.pem")]
        waitHealthy(port, trusted, harness: harness, "gateway")
        let url = "https://localhost:\(port)/v1/answer"
        let ask = ["-H", "Content-Type: application/json", "-H", "Authorization: Bearer \(Self.token)",
                   "-d", #"{"question":"What is gingivitis?","max_tokens":4}"#]

        // The test CA makes the server trusted; without it curl refuses the certificate.
        let ok = try Self.curl(url, trusted + ask)
        XCTAssertEqual(ok.status, 200, ok.body)
        XCTAssertEqual(try Self.curl("https://127.0.0.1:\(port)/healthz", trusted).status, 200, "the IP address is in the certificate too")
        let untrusted = try Self.curl(url, ask)
        XCTAssertEqual(untrusted.exit, 60, "curl must refuse a certificate it cannot verify")
        // Plain HTTP to the TLS port gets nothing useful.
        XCTAssertNotEqual(try Self.curl("http://127.0.0.1:\(port)/healthz", []).status, 200)

        // Optional client certificates: one presented names the client (the token has no name of its own).
        let withCert = try Self.curl(url, trusted + ["--cert", file("client-1.pem"), "--key", file("client-1.key")] + ask)
        XCTAssertEqual(withCert.status, 200, withCert.body)
        // A certificate from another CA is refused at the handshake, even in optional mode.
        let rogue = harness.dir.appendingPathComponent("rogue")
        try FileManager.default.createDirectory(at: rogue, withIntermediateDirectories: true)
        try Self.makePKI(rogue, client: "mallory")
        let forged = try Self.curl(url, trusted + ["--cert", rogue.appendingPathComponent("mallory.pem").path,
                                                   "--key", rogue.appendingPathComponent("mallory.key").path] + ask)
        XCTAssertNotEqual(forged.exit, 0, "a client certificate from an unknown CA was accepted")
        let metrics = try Self.curl("https://localhost:\(port)/metrics", trusted).body
        XCTAssertTrue(metrics.contains(#"mambaformer_gateway_requests_total{endpoint="/v1/answer",status="200",client="client-1"} 1"#), metrics)
        XCTAssertTrue(harness.log("gateway").contains("client_name=client-1"), harness.log("gateway"))

        // SIGHUP swaps the certificate: the files now hold one from a second CA.
        let second = harness.dir.appendingPathComponent("second")
        try FileManager.default.createDirectory(at: second, withIntermediateDirectories: true)
        try Self.makePKI(second, ca: "ca2")
        for name in ["server.pem", "server.key"] {
            try Data(contentsOf: second.appendingPathComponent(name)).write(to: URL(fileURLWithPath: file(name)))
        }
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file("server.key"))
        harness.signal("gateway", SIGHUP)
        let deadline = Date().addingTimeInterval(10)
        while !harness.log("gateway").contains("TLS certificates reloaded"), Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        XCTAssertTrue(harness.log("gateway").contains("TLS certificates reloaded"), harness.log("gateway"))
        XCTAssertEqual(try Self.curl(url, trusted + ask).exit, 60, "still the old certificate after SIGHUP")
        XCTAssertEqual(try Self.curl(url, ["--cacert", second.appendingPathComponent("ca2.pem").path] + ask).status, 200)
        // A broken key on the next SIGHUP keeps the certificate in force.
        try "not a key\n".write(toFile: file("server.key"), atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file("server.key"))
        harness.signal("gateway", SIGHUP)
        let refusedAt = Date().addingTimeInterval(10)
        while !harness.log("gateway").contains("SIGHUP: not reloaded"), Date() < refusedAt { Thread.sleep(forTimeInterval: 0.05) }
        XCTAssertTrue(harness.log("gateway").contains("gateway.tls_key"), harness.log("gateway"))
        XCTAssertEqual(try Self.curl(url, ["--cacert", second.appendingPathComponent("ca2.pem").path] + ask).status, 200)
    }

    /// Client certificates required and no tokens: the certificate is the credential and its CN
    /// the client's name; no certificate, no connection. A gateway beyond loopback may then
    /// start without a token file.
    func testRequiredClientCertificatesAreTheOnlyCredential() throws {
        let harness = try ClusterHarness()
        defer { harness.stopAll() }
        let pki = harness.dir.appendingPathComponent("pki")
        try FileManager.default.createDirectory(at: pki, withIntermediateDirectories: true)
        try Self.makePKI(pki, client: "triage-tool")
        func file(_ name: String) -> String { pki.appendingPathComponent(name).path }
        try harness.startRouter()
        try harness.startExpert("emamba", id: "emamba-1")
        try harness.startExpert("et5", id: "et5-1")
        let port = ClusterHarness.freePort()
        try harness.start("gateway", ["gateway", "--listen", "0.0.0.0:\(port)", "--router", harness.frontend,
                                      "--tls-cert", file("server.pem"), "--tls-key", file("server.key"),
                                      "--tls-client-ca", file("ca.pem"), "--tls-require-client-cert"])
        let identity = ["--cacert", file("ca.pem"), "--cert", file("triage-tool.pem"), "--key", file("triage-tool.key")]
        waitHealthy(port, identity, harness: harness, "gateway")
        let ask = ["-H", "Content-Type: application/json", "-d", #"{"question":"What is gingivitis?","max_tokens":4}"#]
        let url = "https://localhost:\(port)/v1/answer"
        let anonymous = try Self.curl(url, ["--cacert", file("ca.pem")] + ask)
        XCTAssertNotEqual(anonymous.exit, 0, "a client without a certificate got through")
        XCTAssertNil(anonymous.status)
        let named = try Self.curl(url, identity + ask)
        XCTAssertEqual(named.status, 200, named.body)
        XCTAssertTrue(harness.log("gateway").contains("client_name=triage-tool"), harness.log("gateway"))
        // A CN that is no client name (it could neither be limited nor told apart) is refused.
        try Self.makeClient(pki, file: "spaced", commonName: "Triage Tool")
        let spaced = try Self.curl(url, ["--cacert", file("ca.pem"), "--cert", file("spaced.pem"), "--key", file("spaced.key")] + ask)
        XCTAssertEqual(spaced.status, 401, spaced.body)
        XCTAssertTrue(spaced.body.contains("is not a client name"), spaced.body)
    }
}
