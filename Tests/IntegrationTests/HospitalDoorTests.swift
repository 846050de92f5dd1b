import Foundation
import TestCommon
import XCTest

/// The hospital door (issue 32), with real processes: per-client quotas under load, and the
/// audit trail of a run checked by `mambaformer audit verify`.
final class HospitalDoorTests: XCTestCase {
    static let limited = "limited-client-token-0123456789"
    static let free = "free-client-token-0123456789"

    private func post(_ json: String, token: String, path: String = "/v1/answer") -> [UInt8] {
        RawHTTP.request("POST", path, headers: ["Content-Type: application/json", "Authorization: Bearer \(token)"],
                        body: Array(json.utf8))
    }

    private func secretFile(_ harness: ClusterHarness, _ name: String, _ text: String) throws -> String {
        let path = harness.dir.appendingPathComponent(name).path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        return path
    }

    /// Two clients send as fast as they can at once: the one limited to 5 requests a minute gets
    /// exactly 5 answers and `429 quota_exceeded` with a Retry-After the bucket explains; the
    /// other gets every answer. The counters say the same. A SIGHUP that raises the limit
    /// lets the limited client through again, without a restart.
    func testTwoClientsWithDifferentLimitsUnderLoad() throws {
        let harness = try ClusterHarness()
        defer { harness.stopAll() }
        let tokens = try secretFile(harness, "tokens", "limited:\(Self.limited)\nfree:\(Self.free)\n")
        let config = harness.dir.appendingPathComponent("cluster.toml").path
        func writeConfig(rpm: Int) throws {
            try """
                [security]
                auth_tokens_file = "\(tokens)"
                auth_failures_per_minute = 0

                [[clients]]
                name = "limited"
                rpm = \(rpm)
                tpm = 100000
                """.write(toFile: config, atomically: true, encoding: .utf8)
        }
        try writeConfig(rpm: 5)
        let port = try harness.startSmallCluster(gatewayArguments: ["--config", config])

        let question = #"{"question":"What is gingivitis?","max_tokens":4}"#
        let lock = NSLock()
        var replies: [String: [RawReply]] = [:]
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            let token = worker % 2 == 0 ? Self.limited : Self.free
            for _ in 0..<6 {
                let reply = (try? RawHTTP.exchange(port: port, post(question, token: token), timeout: 60)) ?? RawReply()
                lock.withLock { replies[token, default: []].append(reply) }
            }
        }
        let limited = replies[Self.limited] ?? [], free = replies[Self.free] ?? []
        XCTAssertEqual(free.map(\.status), Array(repeating: 200, count: 12), harness.log("gateway"))
        XCTAssertEqual(limited.filter { $0.status == 200 }.count, 5)
        let refused = limited.filter { $0.status == 429 }
        XCTAssertEqual(refused.count, 7)
        for reply in refused {
            XCTAssertEqual(reply.errorCode, "quota_exceeded", reply.body)
            // 5 a minute: one request refills every 12 s.
            let retry = reply.head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("retry-after:") }
                .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) }
            XCTAssertNotNil(retry, reply.head)
            XCTAssertTrue((1...12).contains(retry ?? 0), reply.head)
        }
        let metrics = try RawHTTP.exchange(port: port, RawHTTP.request("GET", "/metrics"), timeout: 5).body
        for series in [#"mambaformer_gateway_quota_rejections_total{client="limited",limit="rpm"} 7"#,
                       #"mambaformer_gateway_requests_total{endpoint="/v1/answer",status="200",client="limited"} 5"#,
                       #"mambaformer_gateway_requests_total{endpoint="/v1/answer",status="429",client="limited"} 7"#,
                       #"mambaformer_gateway_requests_total{endpoint="/v1/answer",status="200",client="free"} 12"#,
                       #"mambaformer_gateway_client_in_flight{client="limited"} 0"#] {
            XCTAssertTrue(metrics.contains(series), "\(series)\n\(metrics)")
        }
        XCTAssertFalse(metrics.contains(#"client="free",limit="#), "the free client was limited")

        // Raise the limit: one SIGHUP, no restart. The bucket keeps its level (a reload is no
        // way to reset it), and refills at the new rate: 6,000 a minute is one per 10 ms.
        try writeConfig(rpm: 6000)
        let before = harness.log("gateway").components(separatedBy: "SIGHUP").count
        harness.signal("gateway", SIGHUP)
        let deadline = Date().addingTimeInterval(10)
        while harness.log("gateway").components(separatedBy: "SIGHUP").count == before, Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTAssertTrue(harness.log("gateway").contains("client limits reloaded"), harness.log("gateway"))
        Thread.sleep(forTimeInterval: 0.2)
        XCTAssertEqual(try RawHTTP.exchange(port: port, post(question, token: Self.limited), timeout: 60).status, 200)
    }

    /// One line per request (answers, a stream, a refusal), the fields an auditor needs and no
    /// prompt text; the chain survives rotation and a restart; `audit verify` passes, and
    /// fails naming the line after a line is edited, deleted or swapped, or the end cut off.
    func testTheAuditTrailOfARun() throws {
        let harness = try ClusterHarness()
        defer { harness.stopAll() }
        let tokens = try secretFile(harness, "tokens", "ward:\(Self.free)\n")
        let key = try secretFile(harness, "audit.key", "a7f3c29e5d8b4a61f0e2d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8\n")
        let auditDir = harness.dir.appendingPathComponent("audit")
        try FileManager.default.createDirectory(at: auditDir, withIntermediateDirectories: true)
        let auditPath = auditDir.appendingPathComponent("audit.log").path
        let config = harness.dir.appendingPathComponent("cluster.toml").path
        try """
            [security]
            auth_tokens_file = "\(tokens)"

            [audit]
            path = "\(auditPath)"
            hmac_key_file = "\(key)"
            rotate_bytes = 4096
            head_interval_s = 1
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let port = try harness.startSmallCluster(gatewayArguments: ["--config", config])

        let secretQuestion = "Does patient Jane Roe need insulin"
        var statuses: [Int] = []
        for i in 0..<12 {
            let body = #"{"question":"\#(secretQuestion) \#(i)?","max_tokens":4}"#
            statuses.append(try RawHTTP.exchange(port: port, post(body, token: Self.free), timeout: 60).status ?? 0)
        }
        statuses.append(try RawHTTP.exchange(port: port, post(#"{"messages":[{"role":"user","content":"\#(secretQuestion)"}],"stream":true,"max_tokens":4}"#,
                                                                token: Self.free, path: "/v1/chat/completions"), timeout: 60).status ?? 0)
        statuses.append(try RawHTTP.exchange(port: port, post(#"{"question":"q"}"#, token: "wrong-token-0123456789"), timeout: 10).status ?? 0)
        _ = try RawHTTP.exchange(port: port, RawHTTP.request("GET", "/healthz"), timeout: 5)
        XCTAssertEqual(statuses, Array(repeating: 200, count: 13) + [401])
        // Past the head interval: the head of the chain is in the gateway's own log.
        Thread.sleep(forTimeInterval: 1.5)

        // The restart continues the chain.
        harness.signal("gateway", SIGTERM)
        XCTAssertEqual(harness.waitForExit("gateway", timeout: 30), 0, harness.log("gateway"))
        let firstLog = harness.log("gateway")
        try harness.start("gateway-2", ["gateway", "--listen", "127.0.0.1:\(port)", "--router", harness.frontend, "--config", config])
        XCTAssertTrue(RawHTTP.waitReady(port: port, emamba: 1, et5: 1), harness.log("gateway-2"))
        XCTAssertEqual(try RawHTTP.exchange(port: port, post(#"{"question":"after the restart","max_tokens":4}"#, token: Self.free),
                                            timeout: 60).status, 200)
        harness.signal("gateway-2", SIGTERM)
        XCTAssertEqual(harness.waitForExit("gateway-2", timeout: 30), 0, harness.log("gateway-2"))

        let rotated = try FileManager.default.contentsOfDirectory(atPath: auditDir.path).filter { $0 != "audit.log" }
            .sorted().map { auditDir.appendingPathComponent($0).path }
        XCTAssertGreaterThanOrEqual(rotated.count, 2, "4 KB files: the run rotates")
        let files = rotated + [auditPath]
        let text = try files.map { try String(contentsOfFile: $0, encoding: .utf8) }.joined()
        XCTAssertFalse(text.contains("Jane Roe") || text.contains("insulin") || text.contains("after the restart"), "prompt text in the audit log")
        let records = try text.split(separator: "\n").map { try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        XCTAssertEqual(records.count, 15, "one line per API request, none for the probe")
        XCTAssertEqual(records.compactMap { $0["status"] as? Int }, Array(repeating: 200, count: 13) + [401, 200])
        XCTAssertEqual(records.map { $0["seq"] as? Int }, Array(0..<15).map { Optional($0) })
        for record in records.prefix(13) {
            XCTAssertEqual(record["client"] as? String, "ward")
            XCTAssertEqual(record["address"] as? String, "127.0.0.1")
            XCTAssertEqual((record["prompt_hmac"] as? String)?.count, 64)
            XCTAssertEqual((record["answer_hmac"] as? String)?.count, 64)
            XCTAssertEqual(record["completion_tokens"] as? Int, 4)
            let spans = record["spans"] as? [[String: Any]] ?? []
            XCTAssertFalse(spans.isEmpty)
            XCTAssertTrue(spans.allSatisfy { ["emamba-1", "et5-1"].contains($0["replica"] as? String ?? "") }, "\(spans)")
        }
        XCTAssertEqual(records[13]["error"] as? String, "unauthorized")

        func verify(_ paths: [String], _ extra: [String] = []) throws -> CommandRun {
            try runCommand(ClusterHarness.binary.path, ["audit", "verify", "--key-file", key] + extra + paths)
        }
        let intact = try verify(files)
        XCTAssertEqual(intact.status, 0, intact.out + intact.err)
        XCTAssertTrue(intact.out.contains("audit trail intact: 15 lines"), intact.out)

        // The head the first gateway logged (off the file) must be in the files.
        let headLine = try XCTUnwrap(firstLog.split(separator: "\n").last { $0.contains("audit chain head") }, firstLog)
        func field(_ name: String) -> String? {
            headLine.split(separator: " ").first { $0.hasPrefix(name + "=") }.map { String($0.dropFirst(name.count + 1)) }
        }
        let head = try XCTUnwrap(field("audit_seq").flatMap { seq in field("audit_mac").map { "\(seq):\($0)" } }, String(headLine))
        XCTAssertEqual(try verify(files, ["--head", head]).status, 0)

        // Tamper with a copy of the current file, one way at a time.
        let current = try String(contentsOfFile: auditPath, encoding: .utf8).split(separator: "\n").map(String.init)
        XCTAssertGreaterThanOrEqual(current.count, 3)
        let copy = auditDir.appendingPathComponent("tampered").path
        func tampered(_ lines: [String], _ extra: [String] = []) throws -> CommandRun {
            try (lines.joined(separator: "\n") + "\n").write(toFile: copy, atomically: true, encoding: .utf8)
            return try verify(rotated + [copy], extra)
        }
        var edited = current
        edited[1] = edited[1].replacingOccurrences(of: #""endpoint":"/v1/"#, with: #""endpoint":"/v2/"#)
        XCTAssertNotEqual(edited, current)
        let afterEdit = try tampered(edited)
        XCTAssertEqual(afterEdit.status, 1)
        XCTAssertTrue(afterEdit.out.contains("\(copy):2: the line's MAC does not match"), afterEdit.out)
        var deleted = current
        deleted.remove(at: 1)
        let afterDelete = try tampered(deleted)
        XCTAssertEqual(afterDelete.status, 1)
        XCTAssertTrue(afterDelete.out.contains("\(copy):2: expected sequence number"), afterDelete.out)
        var swapped = current
        swapped.swapAt(0, 1)
        let afterSwap = try tampered(swapped)
        XCTAssertEqual(afterSwap.status, 1)
        XCTAssertTrue(afterSwap.out.contains("\(copy):1: expected sequence number"), afterSwap.out)
        // The last lines cut off: the chain alone still holds, the logged head does not.
        let lastHead = try XCTUnwrap(harness.log("gateway-2").split(separator: "\n").last { $0.contains("audit chain head") })
        let lastSeq = try XCTUnwrap(lastHead.split(separator: " ").first { $0.hasPrefix("audit_seq=") }).dropFirst(10)
        let lastMac = try XCTUnwrap(lastHead.split(separator: " ").first { $0.hasPrefix("audit_mac=") }).dropFirst(10)
        XCTAssertEqual(try tampered(Array(current.dropLast())).status, 0)
        let afterCut = try tampered(Array(current.dropLast()), ["--head", "\(lastSeq):\(lastMac)"])
        XCTAssertEqual(afterCut.status, 1)
        XCTAssertTrue(afterCut.out.contains("lines were cut off the end"), afterCut.out)
    }
}
