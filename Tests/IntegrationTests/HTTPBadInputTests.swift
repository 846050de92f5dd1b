import Foundation
#if canImport(Glibc)
import Glibc
#endif
import XCTest

/// A corpus of malformed HTTP requests against a real gateway process (issue #12, "Bad input →
/// HTTP"): each gets its exact 4xx, and after each one a valid answer request still gets 200.
/// A raw TCP client sends the exact bytes with the exact timing (slowloris), which no HTTP
/// library would. Prints a table of statuses and times for RELIABILITY.md.
final class HTTPBadInputTests: XCTestCase {
    static let readTimeoutMs = 1500
    static let valid = #"{"question":"What is a molar?","max_tokens":4}"#

    fileprivate struct Case {
        let name: String
        let status: Int
        /// The error `code` expected in the JSON body.
        let code: String
        let send: (RawConnection) -> Void
    }

    func testMalformedRequestsGetA4xxAndTheGatewayKeepsServing() throws {
        let started = Date()
        let harness = try ClusterHarness()
        defer { harness.stopAll() }
        let port = try harness.startSmallCluster(gatewayArguments: ["--read-timeout-ms", "\(Self.readTimeoutMs)"])
        let ready = Date()

        var table: [(String, Int?, Double)] = []
        func check(_ c: Case) throws {
            let connection = try RawConnection(port: port)
            c.send(connection)
            let reply = connection.readReply(timeout: 10)
            table.append((c.name, reply.status, reply.seconds))
            XCTAssertEqual(reply.status, c.status, "\(c.name): \(reply.summary)\n\(harness.log("gateway").suffix(2000))")
            XCTAssertEqual(reply.errorCode, c.code, "\(c.name): \(reply.summary)")
            if c.status == 408 {
                let limit = Double(Self.readTimeoutMs) / 1000
                XCTAssertGreaterThan(reply.seconds, limit - 0.05, "\(c.name): not before the read timeout")
                XCTAssertLessThan(reply.seconds, limit + 1, "\(c.name): at the read timeout, within a margin")
            }
            if reply.head.lowercased().contains("connection: close") {
                XCTAssertTrue(connection.closesWithin(2), "\(c.name): said `Connection: close` but stayed open")
            }
            connection.close()
            try assertServes(port: port, after: c.name, harness)
        }

        for c in Self.corpus { try check(c) }
        try checkSlowlorisDoesNotBlockOthers(port: port, harness, table: &table)

        // The refusals are counted for operators (3 slowloris-style 408s, 2 header floods, 5 bad requests).
        let metrics = try RawConnection(port: port)
        metrics.send(Array("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8))
        let text = metrics.readReply(timeout: 5).body
        metrics.close()
        for line in ["mambaformer_gateway_read_timeouts_total{action=\"408\"} 3",
                     "mambaformer_gateway_malformed_requests_total{status=\"431\"} 2",
                     "mambaformer_gateway_malformed_requests_total{status=\"400\"} 5"] {
            XCTAssertTrue(text.contains(line), "/metrics lacks \(line)")
        }

        XCTAssertTrue(harness.processes["gateway"]?.isRunning ?? false, "the gateway died\n\(harness.log("gateway"))")
        // Nothing unexpected was logged as an error (a 500 would be).
        XCTAssertFalse(harness.log("gateway").contains(" error mambaformer") || harness.log("gateway").contains(" critical mambaformer"), harness.log("gateway").suffix(3000).description)

        print("HTTPBadInputTests: read timeout \(Self.readTimeoutMs) ms; cluster ready in "
              + String(format: "%.1f s", ready.timeIntervalSince(started)))
        print("| case | status | time to answer/close |")
        print("|---|---|---|")
        for (name, status, seconds) in table {
            print("| \(name) | \(status.map(String.init) ?? "none") | \(String(format: "%.0f ms", seconds * 1000)) |")
        }
        print("HTTPBadInputTests: total \(String(format: "%.1f s", Date().timeIntervalSince(started)))")
    }

    // MARK: The corpus

    fileprivate static func post(_ body: [UInt8], headers: [String] = [], path: String = "/v1/answer") -> [UInt8] {
        RawHTTP.request("POST", path, headers: ["Content-Type: application/json"] + headers, body: body)
    }

    fileprivate static func post(_ json: String) -> [UInt8] { post(Array(json.utf8)) }

    fileprivate static func sending(_ bytes: [UInt8]) -> (RawConnection) -> Void { { $0.send(bytes) } }

    fileprivate static var corpus: [Case] {
        let tenMB = [UInt8](repeating: UInt8(ascii: "a"), count: 10 << 20)
        var chunked = Array("POST /v1/answer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 64 << 10)
        for _ in 0..<160 { chunked += Array("10000\r\n".utf8) + chunk + Array("\r\n".utf8) }
        chunked += Array("0\r\n\r\n".utf8)
        let flood = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + (0..<2000).map { "X-Flood-\($0): v\r\n" }.joined() + "\r\n"
        let bigHeader = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + String(repeating: "b", count: 100_000) + "\r\n\r\n"
        let slowHead = Array(post(valid).prefix(40))   // never completes: 40 bytes at 1 byte / 300 ms
        let slowBody = post(valid)
        let bodyStart = slowBody.count - valid.utf8.count

        return [
            Case(name: "broken JSON: truncated object", status: 400, code: "invalid_json",
                 send: sending(post(#"{"question": "What is a molar?""#))),
            Case(name: "broken JSON: missing value", status: 400, code: "invalid_json",
                 send: sending(post(#"{"question": }"#))),
            Case(name: "broken JSON: not JSON", status: 400, code: "invalid_json",
                 send: sending(post("question=What+is+a+molar"))),
            Case(name: "broken JSON: trailing comma", status: 400, code: "invalid_json",
                 send: sending(post(#"{"question": "q",}"#))),
            Case(name: "broken JSON: empty body", status: 400, code: "invalid_json",
                 send: sending(post(""))),
            Case(name: "wrong type: question is a number", status: 422, code: "invalid_type",
                 send: sending(post(#"{"question": 42}"#))),
            Case(name: "wrong type: max_tokens is a string", status: 422, code: "invalid_type",
                 send: sending(post(#"{"question": "q", "max_tokens": "four"}"#))),
            Case(name: "wrong type: body is an array", status: 422, code: "invalid_type",
                 send: sending(post(#"["What is a molar?"]"#))),
            // Beyond Double: the parser refuses the number itself.
            Case(name: "huge number: max_tokens 1e400", status: 400, code: "invalid_json",
                 send: sending(post(#"{"question": "q", "max_tokens": 1e400}"#))),
            Case(name: "huge number: max_tokens 99999999999999999999999", status: 422, code: "invalid_type",
                 send: sending(post(#"{"question": "q", "max_tokens": 99999999999999999999999}"#))),
            Case(name: "negative max_tokens", status: 422, code: "invalid_value",
                 send: sending(post(#"{"question": "q", "max_tokens": -5}"#))),
            Case(name: "invalid UTF-8 in the body", status: 400, code: "invalid_utf8",
                 send: sending(post(Array(#"{"question": ""#.utf8) + [0xFF, 0xFE, 0xC3] + Array(#""}"#.utf8)))),
            Case(name: "10 MB body with Content-Length", status: 413, code: "body_too_large",
                 send: sending(post(tenMB))),
            Case(name: "10 MB body, chunked, no length", status: 413, code: "body_too_large",
                 send: sending(chunked)),
            Case(name: "slowloris: head at 1 byte / 300 ms", status: 408, code: "request_timeout",
                 send: { $0.dribble(slowHead, every: 0.3) }),
            Case(name: "slow body: head whole, body at 1 byte / 300 ms", status: 408, code: "request_timeout",
                 send: { c in
                     c.send(Array(slowBody[..<bodyStart]))
                     c.dribble(Array(slowBody[bodyStart...]), every: 0.3)
                 }),
            Case(name: "header flood: 2000 header lines", status: 431, code: "headers_too_large",
                 send: sending(Array(flood.utf8))),
            Case(name: "one 100 KB header", status: 431, code: "headers_too_large",
                 send: sending(Array(bigHeader.utf8))),
            Case(name: "bogus request line", status: 400, code: "malformed_request",
                 send: sending(Array("GARBAGE\r\n\r\n".utf8))),
            Case(name: "HTTP/0.9 request line", status: 400, code: "malformed_request",
                 send: sending(Array("GET /\r\n\r\n".utf8))),
            Case(name: "binary garbage", status: 400, code: "malformed_request",
                 send: sending((0..<512).map { UInt8(truncatingIfNeeded: $0 &* 7919 &+ 13) })),
            Case(name: "Content-Length not a number", status: 400, code: "malformed_request",
                 send: sending(Array("POST /v1/answer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n{}".utf8))),
            Case(name: "Content-Length and chunked together (smuggling)", status: 400, code: "malformed_request",
                 send: sending(Array(("POST /v1/answer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\n"
                                      + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n").utf8))),
        ]
    }

    // MARK: Steps

    /// While a slowloris connection dribbles its head, valid requests are served at once.
    private func checkSlowlorisDoesNotBlockOthers(port: Int, _ harness: ClusterHarness,
                                          table: inout [(String, Int?, Double)]) throws {
        let slow = try RawConnection(port: port)
        let done = DispatchSemaphore(value: 0)
        let result = Box<RawReply?>(nil)
        Thread.detachNewThread {
            slow.dribble(Array(Self.post(Self.valid).prefix(40)), every: 0.3)
            result.value = slow.readReply(timeout: 10)
            done.signal()
        }
        Thread.sleep(forTimeInterval: 0.2)
        var served: [Double] = []
        for _ in 0..<3 {
            let reply = try answer(port: port)
            XCTAssertEqual(reply.status, 200, "a valid request beside a slowloris: \(reply.summary)")
            served.append(reply.seconds)
        }
        XCTAssertEqual(done.wait(timeout: .now() + 0.0), .timedOut,
                       "the slowloris connection should still be open while the others were served")
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        slow.close()
        let reply = result.value
        XCTAssertEqual(reply?.status, 408, reply?.summary ?? "no reply")
        table.append(("slowloris open; 3 valid requests beside it", reply?.status, reply?.seconds ?? 0))
        print("HTTPBadInputTests: valid requests served beside a slowloris in "
              + served.map { String(format: "%.0f ms", $0 * 1000) }.joined(separator: ", "))
        try assertServes(port: port, after: "slowloris beside valid requests", harness)
    }

    private func answer(port: Int) throws -> RawReply {
        let connection = try RawConnection(port: port)
        defer { connection.close() }
        connection.send(Self.post(Self.valid))
        return connection.readReply(timeout: 30)
    }

    private func assertServes(port: Int, after name: String, _ harness: ClusterHarness) throws {
        let reply = try answer(port: port)
        XCTAssertEqual(reply.status, 200, "after \(name): \(reply.summary)\n\(harness.log("gateway").suffix(2000))")
        XCTAssertTrue(reply.body.contains("\"answer\""), "after \(name): \(reply.summary)")
    }
}

private final class Box<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}
