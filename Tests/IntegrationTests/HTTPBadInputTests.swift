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
        try harness.startRouter(gate: "alternate", spanTokens: 4)
        try harness.startExpert("emamba", id: "emamba-1")
        try harness.startExpert("et5", id: "et5-1")
        let port = ClusterHarness.freePort()
        try harness.start("gateway", ["gateway", "--listen", "127.0.0.1:\(port)", "--router", harness.frontend,
                                      "--read-timeout-ms", "\(Self.readTimeoutMs)"])
        try waitReady(port: port, harness)
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
        let head = ["POST \(path) HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
                    "Content-Length: \(body.count)"] + headers
        return Array((head.joined(separator: "\r\n") + "\r\n\r\n").utf8) + body
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

    private func waitReady(port: Int, _ harness: ClusterHarness) throws {
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if let connection = try? RawConnection(port: port) {
                connection.send(Array("GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8))
                let reply = connection.readReply(timeout: 5)
                connection.close()
                if reply.status == 200, reply.body.contains("\"emamba\":1"), reply.body.contains("\"et5\":1") { return }
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
        XCTFail("cluster not ready\n\(harness.allLogs())")
        throw CancellationError()
    }
}

private final class Box<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}

// MARK: - A raw TCP client

/// What came back on a raw connection.
private struct RawReply {
    var status: Int?
    var head = ""
    var body = ""
    /// From connecting to the reply being complete (or the connection closing).
    var seconds: Double = 0
    var closed = false
    var timedOut = false

    var errorCode: String? {
        let object = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        return (object?["error"] as? [String: Any])?["code"] as? String
    }

    var summary: String {
        "status \(status.map(String.init) ?? "none") after \(String(format: "%.0f", seconds * 1000)) ms"
            + (closed ? ", closed" : "") + (timedOut ? ", timed out" : "") + "\n\(head)\n\(body.prefix(500))"
    }
}

/// One TCP connection that sends exactly the bytes a test gives, when it says, and reads one
/// HTTP response back. Blocking POSIX calls with receive timeouts: nothing here can hang.
private final class RawConnection: @unchecked Sendable {
    let fd: Int32
    let opened = Date()
    private var isClosed = false

    enum Failure: Error { case socket(Int32), connect(Int32) }

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure.socket(errno) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            let error = errno
            Glibc.close(fd)
            throw Failure.connect(error)
        }
        // A safety net: no recv blocks longer than this, whatever the caller's loop does.
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close() }

    func close() {
        if !isClosed { Glibc.close(fd); isClosed = true }
    }

    /// Sends everything; false once the peer closed or reset (no SIGPIPE).
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    /// Sends one byte per `interval`, stopping early when the server answers or closes.
    func dribble(_ bytes: [UInt8], every interval: Double) {
        for byte in bytes {
            if readable(within: interval) { return }
            if !send([byte]) { return }
        }
    }

    /// True if the peer closes (EOF or reset) within `seconds`, ignoring anything it still sends.
    func closesWithin(_ seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while deadline.timeIntervalSinceNow > 0 {
            guard readable(within: deadline.timeIntervalSinceNow) else { return false }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return true }
        }
        return false
    }

    func readable(within seconds: Double) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, Int32(seconds * 1000)) > 0
    }

    /// Reads one response (head, then Content-Length bytes) or until the peer closes.
    func readReply(timeout: Double) -> RawReply {
        var reply = RawReply()
        var data: [UInt8] = []
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            if let (head, bodyStart) = Self.splitHead(data) {
                reply.head = head
                reply.status = head.split(separator: " ").dropFirst().first.flatMap { Int($0) }
                let length = head.split(separator: "\r\n").compactMap { line -> Int? in
                    let parts = line.split(separator: ":", maxSplits: 1)
                    guard parts.count == 2, parts[0].lowercased() == "content-length" else { return nil }
                    return Int(parts[1].trimmingCharacters(in: .whitespaces))
                }.first
                if let length, data.count - bodyStart >= length {
                    reply.body = String(decoding: data[bodyStart..<(bodyStart + length)], as: UTF8.self)
                    break
                }
                reply.body = String(decoding: data[bodyStart...], as: UTF8.self)
            }
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0, readable(within: min(remaining, 2)) else {
                if remaining <= 0 { reply.timedOut = true; break }
                continue
            }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { reply.closed = true; break }   // closed or reset
            data += buffer[0..<n]
        }
        reply.seconds = Date().timeIntervalSince(opened)
        return reply
    }

    static func splitHead(_ data: [UInt8]) -> (String, Int)? {
        let marker: [UInt8] = [13, 10, 13, 10]
        guard data.count >= 4 else { return nil }
        for i in 0...(data.count - 4) where data[i] == 13 && Array(data[i..<(i + 4)]) == marker {
            return (String(decoding: data[..<i], as: UTF8.self), i + 4)
        }
        return nil
    }
}
