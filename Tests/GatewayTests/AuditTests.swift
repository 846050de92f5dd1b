import Audit
import ClusterConfig
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import GatewayClient
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import XCTest
@testable import Gateway

final class AuditTests: XCTestCase {
    let key = AuditKey(secret: Array("0123456789abcdef0123456789abcdef".utf8))
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("audit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    var logger: Logger { var l = Logger(label: "audit-test"); l.logLevel = .critical; return l }

    func write(_ count: Int, to path: String, options: AuditLog.Options = AuditLog.Options()) async throws {
        let log = try AuditLog(path: path, key: key, options: options, logger: logger)
        for i in 0..<count {
            let ok = await log.append(#""event":"test","i":\#(i),"padding":"\#(String(repeating: "x", count: 40))""#)
            XCTAssertTrue(ok)
        }
        log.close()
    }

    func lines(_ path: String) throws -> [String] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
    }
    func save(_ lines: [String], _ path: String) throws {
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    }
    func finding(_ paths: [String], partial: Bool = false, heads: [UInt64: String] = [:]) throws -> AuditFinding? {
        var verifier = AuditVerifier(key: key)
        verifier.partial = partial
        verifier.heads = heads
        if case .failure(let f) = try verifier.verify(paths: paths) { return f }
        return nil
    }

    func testTheChainDetectsEditsRemovalsAndReorderings() async throws {
        let path = dir.appendingPathComponent("audit.log").path
        try await write(6, to: path)
        let original = try lines(path)
        XCTAssertEqual(original.count, 6)
        XCTAssertNil(try finding([path]))
        XCTAssertTrue(original[0].hasPrefix(#"{"seq":0,"prev":"\#(AuditChain.genesis)","event":"test","i":0"#), original[0])

        var edited = original
        edited[2] = edited[2].replacingOccurrences(of: #""i":2"#, with: #""i":7"#)
        try save(edited, path)
        XCTAssertEqual(try finding([path]), AuditFinding(file: path, line: 3, kind: .altered))

        var removed = original
        removed.remove(at: 3)
        try save(removed, path)
        XCTAssertEqual(try finding([path]), AuditFinding(file: path, line: 4, kind: .brokenLink(expectedSeq: 3, foundSeq: 4)))

        var swapped = original
        swapped.swapAt(1, 2)
        try save(swapped, path)
        XCTAssertEqual(try finding([path]), AuditFinding(file: path, line: 2, kind: .brokenLink(expectedSeq: 1, foundSeq: 2)))

        // Cut off the end: the chain alone still holds, the head logged off the file does not.
        let head = try XCTUnwrap(AuditChain.open(Array(original[5].utf8), key: key))
        try save(Array(original.prefix(4)), path)
        XCTAssertNil(try finding([path]))
        XCTAssertEqual(try finding([path], heads: [5: head.mac])?.kind, .headMissing(seq: 5))

        // The start cut off: refused unless asked to check from the middle.
        try save(Array(original.dropFirst(2)), path)
        XCTAssertEqual(try finding([path])?.kind, .doesNotStartAtGenesis(firstSeq: 2))
        XCTAssertNil(try finding([path], partial: true))

        // Another key cannot vouch for the lines.
        try save(original, path)
        var other = AuditVerifier(key: AuditKey(secret: Array("another key, also 32 bytes long!".utf8)))
        other.partial = true
        if case .success = try other.verify(paths: [path]) { XCTFail("verified under the wrong key") }
    }

    func testRotationAndRestartContinueTheChain() async throws {
        let path = dir.appendingPathComponent("audit.log").path
        var options = AuditLog.Options()
        options.rotateBytes = 600
        try await write(10, to: path, options: options)
        try await write(5, to: path, options: options)   // a restart continues from the last line
        let rotated = try FileManager.default.contentsOfDirectory(atPath: dir.path)
            .filter { $0.hasPrefix("audit.log.") }.sorted().map { dir.appendingPathComponent($0).path }
        XCTAssertGreaterThanOrEqual(rotated.count, 3, "\(rotated)")
        for file in rotated + [path] {
            let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: file)[.size] as? Int)
            XCTAssertLessThanOrEqual(size, 600, file)
        }
        var verifier = AuditVerifier(key: key)
        let result = try verifier.verify(paths: rotated + [path])
        guard case .success(let summary) = result else { return XCTFail("chain broken across files: \(result) \(rotated)") }
        XCTAssertEqual(summary.lines, 15)
        XCTAssertEqual(summary.lastSeq, 14)
        // One file missing from the middle is found.
        XCTAssertNotNil(try finding(Array(rotated.dropFirst(1).prefix(1)) + [path]))
        verifier.partial = true
        XCTAssertNotNil(try finding([rotated[0], path]))

        // A rotation whose next line never came (a full disk, say): the chain continues from
        // the newest rotated file instead of starting again.
        let current = try lines(path)
        let firstOfCurrent = try XCTUnwrap(AuditChain.open(Array(current[0].utf8), key: key)).seq
        try FileManager.default.moveItem(atPath: path, toPath: path + "." + String(format: "%012llu", firstOfCurrent))
        try await write(2, to: path, options: options)
        let all = try FileManager.default.contentsOfDirectory(atPath: dir.path)
            .filter { $0.hasPrefix("audit.log.") }.sorted().map { dir.appendingPathComponent($0).path }
        guard case .success(let after) = try verifier.verify(paths: all + [path]) else { return XCTFail("chain restarted after a rotation") }
        XCTAssertEqual(after.lastSeq, 16)

        // A log whose last line does not verify (a torn write, an edit) is set aside, not lost:
        // the chain continues after its last good line, with a record saying so.
        var edited = try lines(path)
        let lastGood = try XCTUnwrap(AuditChain.open(Array(edited[edited.count - 2].utf8), key: key))
        edited[edited.count - 1] = edited[edited.count - 1].replacingOccurrences(of: "test", with: "tset")
        try save(edited, path)
        try (try String(contentsOfFile: path, encoding: .utf8) + #"{"seq":17,"pr"# + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        try await write(1, to: path, options: options)
        let damaged = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix("-damaged") }
        XCTAssertEqual(damaged.count, 1, "the damaged file is kept")
        let resumed = try lines(path)
        XCTAssertEqual(resumed.count, 2)
        let recovered = try XCTUnwrap(AuditChain.open(Array(resumed[0].utf8), key: key))
        XCTAssertEqual(recovered.seq, lastGood.seq + 1)
        XCTAssertEqual(recovered.prev, lastGood.mac)
        XCTAssertTrue(resumed[0].contains(#""event":"audit_recovered""#) && resumed[0].contains(damaged[0]), resumed[0])
        XCTAssertNil(try finding([path], partial: true), "the new file continues the chain")
        // Under another key nothing verifies: refused, never a new chain by mistake.
        XCTAssertThrowsError(try AuditLog(path: path, key: AuditKey(secret: Array("another key, also 32 bytes long!".utf8)), logger: logger)) {
            XCTAssertEqual($0 as? AuditError, .tailDoesNotVerify(path: path))
        }
    }

    func testAFailedWriteMakesTheLogUnhealthy() async throws {
        // /dev/full: every write fails with ENOSPC, as on a full disk.
        let log = try AuditLog(path: "/dev/full", key: key, logger: logger)
        defer { log.close() }
        XCTAssertTrue(log.isHealthy)
        let written = await log.append(#""event":"test""#)
        XCTAssertFalse(written)
        XCTAssertFalse(log.isHealthy)
        let again = await log.append(#""event":"test""#)
        XCTAssertFalse(again)
    }

    func testKeyFileChecks() throws {
        let file = dir.appendingPathComponent("audit.key").path
        try "short\n".write(toFile: file, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file)
        XCTAssertEqual(try? AuditKey.load(path: file).hash("x"), nil)
        XCTAssertThrowsError(try AuditKey.load(path: file)) { XCTAssertEqual($0 as? AuditError, .keyTooShort(path: file, bytes: 5)) }
        try (String(repeating: "ab", count: 32) + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: file)
        XCTAssertThrowsError(try AuditKey.load(path: file)) { XCTAssertEqual($0 as? AuditError, .keyTooOpen(path: file, mode: 0o644)) }
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file)
        XCTAssertNoThrow(try AuditKey.load(path: file))
    }

    /// Through the gateway: one line per API request (refusals included, probes not), the
    /// fields an auditor needs, hashes instead of the text.
    func testTheGatewayWritesOneLinePerRequest() async throws {
        let path = dir.appendingPathComponent("audit.log").path
        let log = try AuditLog(path: path, key: key, logger: logger)
        let audit = GatewayAudit(log: log, key: key)
        let token = "ward-token-0123456789"
        let config = TestSupport.config {
            $0.authTokens = [token]; $0.clientNames = [token: "ward"]
            $0.clients = [ClientLimits(name: "ward", rpm: 3)]
        }
        let app = makeGatewayApplication(config: config, backend: FakeBackend.simple(), logger: logger, audit: audit)
        try await app.test(.router) { client in
            let auth: HTTPFields = [.contentType: "application/json", .authorization: "Bearer \(token)"]
            let ok = try await TestSupport.post(client, "/v1/answer", #"{"question": "Is aspirin safe?", "context": "patient X"}"#, headers: auth)
            XCTAssertEqual(ok.status, .ok)
            let stream = try await TestSupport.post(client, "/v1/chat/completions",
                                                    #"{"messages": [{"role": "user", "content": "dose?"}], "stream": true}"#, headers: auth)
            XCTAssertEqual(stream.status, .ok)
            let anonymous = try await TestSupport.post(client, "/v1/answer", #"{"question": "q"}"#)
            XCTAssertEqual(anonymous.status, .unauthorized)
            let probe = try await client.execute(uri: "/healthz", method: .get)
            XCTAssertEqual(probe.status, .ok)
            let third = try await TestSupport.post(client, "/v1/answer", #"{"question": "q"}"#, headers: auth)
            XCTAssertEqual(third.status, .ok)
            let fourth = try await TestSupport.post(client, "/v1/answer", #"{"question": "q"}"#, headers: auth)
            XCTAssertEqual(fourth.status, .tooManyRequests)
        }
        log.close()
        let text = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertFalse(text.contains("aspirin") || text.contains("patient X") || text.contains("dose?"), "prompt text in the log")
        let records = try text.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        XCTAssertEqual(records.map { $0["status"] as? Int }, [200, 200, 401, 200, 429])
        XCTAssertEqual(records.map { $0["endpoint"] as? String }, ["/v1/answer", "/v1/chat/completions", "/v1/answer", "/v1/answer", "/v1/answer"])
        XCTAssertEqual(records.map { $0["client"] as? String }, ["ward", "ward", nil, "ward", "ward"])
        XCTAssertEqual(records[4]["error"] as? String, "quota_exceeded")
        XCTAssertEqual(records[2]["error"] as? String, "unauthorized")
        let first = records[0]
        XCTAssertEqual(first["prompt_hmac"] as? String, key.hash("Is aspirin safe?\u{0}patient X"))
        XCTAssertEqual(first["answer_hmac"] as? String, key.hash("The answer is 42."))
        XCTAssertEqual(first["completion_tokens"] as? Int, 7)
        XCTAssertEqual(first["finish_reason"] as? String, "eos")
        XCTAssertEqual((first["spans"] as? [[String: Any]])?.map { $0["expert"] as? String }, ["emamba", "et5", "emamba"])
        XCTAssertNotNil(first["latency_ms"] as? Double)
        XCTAssertEqual(first["address"] as? String, "")
        XCTAssertEqual(records[1]["answer_hmac"] as? String, key.hash("The answer is 42."), "the stream's answer")
        XCTAssertNil(try finding([path]))
    }

    /// A stream the client leaves mid-answer: its line records what was sent before.
    func testAStreamCutShortIsAuditedWithWhatItSent() async throws {
        let path = dir.appendingPathComponent("audit.log").path
        let log = try AuditLog(path: path, key: key, logger: logger)
        let backend = FakeBackend { _ in [.span(0, "first"), .sleep(100), .span(1, " second"), .sleep(30_000), .done()] }
        let app = makeGatewayApplication(config: TestSupport.config(), backend: backend, logger: logger,
                                         audit: GatewayAudit(log: log, key: key))
        try await app.test(.live) { client in
            let port = try XCTUnwrap(client.port)
            var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/v1/answer")!)
            request.httpMethod = "POST"
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.setValue("cut-short", forHTTPHeaderField: "X-Request-Id")
            request.httpBody = Data(#"{"question": "q", "stream": true}"#.utf8)
            let sse = SSEStream.open(request)
            var received = 0
            for try await _ in sse.stream { received += 1; if received == 2 { break } }
            sse.cancel()
            _ = await backend.waitForCancel("cut-short", timeout: .seconds(5))
        }
        let deadline = Date().addingTimeInterval(5)
        while (try? lines(path).count) ?? 0 < 1, Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
        log.close()
        let record = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try XCTUnwrap(lines(path).first).utf8)) as? [String: Any])
        XCTAssertEqual(record["error"] as? String, "client_closed")
        XCTAssertEqual(record["answer_hmac"] as? String, key.hash("first second"), "what the client was shown")
        XCTAssertEqual((record["spans"] as? [Any])?.count, 2)
    }

    /// The log cannot be written: no answer goes out (503), unless unaudited answers are allowed.
    func testNoAnswerWithoutItsLine() async throws {
        for allow in [false, true] {
            let log = try AuditLog(path: "/dev/full", key: key, logger: logger)
            let app = makeGatewayApplication(config: TestSupport.config(), backend: FakeBackend.simple(), logger: logger,
                                             audit: GatewayAudit(log: log, key: key, allowUnaudited: allow))
            try await app.test(.router) { client in
                let first = try await TestSupport.post(client, "/v1/answer", #"{"question": "q"}"#)
                let streamed = try await TestSupport.post(client, "/v1/answer", #"{"question": "q", "stream": true}"#)
                let later = try await TestSupport.post(client, "/v1/answer", #"{"question": "q"}"#)
                if allow {
                    XCTAssertEqual([first.status, streamed.status, later.status], [.ok, .ok, .ok])
                } else {
                    XCTAssertEqual(first.status, .serviceUnavailable)
                    XCTAssertEqual(try TestSupport.error(first).code, "audit_unavailable")
                    XCTAssertFalse(TestSupport.text(first).contains("answer is 42"), "the answer went out unaudited")
                    XCTAssertEqual(later.status, .serviceUnavailable)
                    XCTAssertEqual(streamed.status, .serviceUnavailable)
                    let ready = try await client.execute(uri: "/readyz", method: .get)
                    XCTAssertEqual(ready.status, .serviceUnavailable, "a gateway that refuses everything is not ready")
                    let probe = try await client.execute(uri: "/healthz", method: .get)
                    XCTAssertEqual(probe.status, .ok)
                }
            }
            log.close()
        }
    }
}
