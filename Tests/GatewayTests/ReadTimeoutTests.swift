import Foundation
import GatewayClient
#if canImport(Glibc)
import Glibc
#endif
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import XCTest
@testable import Gateway

/// The request read timeout (slowloris): a request that trickles in gets 408 and a closed
/// connection; the time spent answering — however long — is never counted against the client.
final class ReadTimeoutTests: XCTestCase {
    func testAnswersLongerThanTheReadTimeoutAreNotCut() async throws {
        // 3 spans 400 ms apart: 1.2 s of answering against a 300 ms read timeout.
        let backend = FakeBackend.simple(delayMs: 400)
        try await TestSupport.app(backend, { $0.readTimeoutMs = 300 }).test(.live) { client in
            let json = try await TestSupport.post(client, "/v1/answer", #"{"question": "q"}"#)
            XCTAssertEqual(json.status, .ok, TestSupport.text(json))
            XCTAssertEqual(try TestSupport.decode(AnswerResponse.self, json).answer, "The answer is 42.")
        }
        // (A fresh client: answers say `Connection: close`.)
        try await TestSupport.app(backend, { $0.readTimeoutMs = 300 }).test(.live) { client in
            let stream = try await TestSupport.post(client, "/v1/answer", #"{"question": "q", "stream": true}"#)
            XCTAssertEqual(stream.status, .ok)
            XCTAssertEqual(TestSupport.sse(stream).map(\.name), ["span", "span", "span", "done"])
        }
    }

    func testATricklingHeadGets408AndAnIdleConnectionIsClosedSilently() async throws {
        try await TestSupport.app(FakeBackend.simple(), { $0.readTimeoutMs = 300 }).test(.live) { client in
            let port = try XCTUnwrap(client.port)
            // Half a request line, then nothing: 408 with the JSON error, then closed.
            let slow = try Socket(port: port)
            slow.send("POST /v1/answer HT")
            let started = Date()
            let reply = slow.readAll(timeout: 5)
            let elapsed = Date().timeIntervalSince(started)
            XCTAssertTrue(reply.hasPrefix("HTTP/1.1 408 "), reply)
            XCTAssertTrue(reply.contains(#""code":"request_timeout""#), reply)
            XCTAssertTrue(reply.lowercased().contains("connection: close"), reply)
            XCTAssertLessThan(elapsed, 2, "closed at the read timeout, not later")

            // Nothing sent at all: closed without a reply (a keep-alive connection gone idle).
            let idle = try Socket(port: port)
            XCTAssertEqual(idle.readAll(timeout: 5), "")

            // After a response, the next request has the same time to arrive.
            let keepAlive = try Socket(port: port)
            keepAlive.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            let first = keepAlive.readAll(timeout: 5)
            XCTAssertTrue(first.hasPrefix("HTTP/1.1 200 "), first)
            // Only a second status line counts: "408" can occur by chance in the random request id.
            XCTAssertFalse(first.contains("HTTP/1.1 408"), "an idle keep-alive connection gets no 408: \(first)")
        }
    }

    func testTheTimeoutMustBePositive() {
        var config = GatewayConfig()
        config.readTimeoutMs = 0
        XCTAssertThrowsError(try config.validate())
    }
}

/// A blocking TCP socket for sending exact bytes (URLSession cannot send half a request).
private final class Socket {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if result != 0 { close(fd); throw POSIXError(.ECONNREFUSED) }
    }

    deinit { close(fd) }

    func send(_ text: String) {
        _ = Array(text.utf8).withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Everything until the peer closes (or `timeout`).
    func readAll(timeout: Double) -> String {
        var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            data += buffer[0..<n]
        }
        return String(decoding: data, as: UTF8.self)
    }
}
