import Foundation
import GatewayClient
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Wire
import XCTest
@testable import Gateway

/// A client that hangs up must stop the router's work (`Cancel`): no expert keeps generating
/// for nobody. Uses a live server and a real HTTP client (URLSession).
final class DisconnectTests: XCTestCase {
    private func request(port: Int, path: String = "/v1/answer", _ json: String) -> URLRequest {
        var r = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        r.httpMethod = "POST"
        r.setValue("application/json", forHTTPHeaderField: "Content-Type")
        r.setValue("disconnect-test", forHTTPHeaderField: "X-Request-Id")
        r.httpBody = Data(json.utf8)
        return r
    }

    private func slowBackend() -> FakeBackend {
        FakeBackend { _ in [.span(0, "first"), .sleep(100), .span(1, " second"), .sleep(30_000), .done()] }
    }

    func testClosingAStreamCancelsTheRequestOnTheRouter() async throws {
        let backend = slowBackend()
        try await TestSupport.app(backend).test(.live) { client in
            let port = try XCTUnwrap(client.port)
            let sse = SSEStream.open(self.request(port: port, #"{"question": "q", "stream": true}"#))
            var received: [SSEParser.Event] = []
            for try await event in sse.stream {
                received.append(event)
                if received.count == 2 { break }
            }
            XCTAssertEqual(received.map(\.name), ["span", "span"])
            XCTAssertTrue(backend.cancelled.isEmpty, "not cancelled while the client is reading")
            sse.cancel()
            let cancelled = await backend.waitForCancel("disconnect-test", timeout: .seconds(5))
            XCTAssertTrue(cancelled, "closing the stream must send Cancel to the router")
        }
    }

    func testClosingAStreamingChatCancelsToo() async throws {
        let backend = slowBackend()
        try await TestSupport.app(backend).test(.live) { client in
            let port = try XCTUnwrap(client.port)
            let sse = SSEStream.open(self.request(port: port, path: "/v1/chat/completions",
                                                  #"{"messages": [{"role": "user", "content": "q"}], "stream": true}"#))
            for try await event in sse.stream where event.data.contains("first") { break }
            sse.cancel()
            let cancelled = await backend.waitForCancel("disconnect-test", timeout: .seconds(5))
            XCTAssertTrue(cancelled)
        }
    }

    func testHangingUpOnAJSONRequestCancelsToo() async throws {
        let backend = slowBackend()
        try await TestSupport.app(backend).test(.live) { client in
            let port = try XCTUnwrap(client.port)
            let sse = SSEStream.open(self.request(port: port, #"{"question": "q"}"#))
            // Wait until the gateway has submitted, then hang up.
            let deadline = ContinuousClock.now + .seconds(5)
            while backend.submitted.isEmpty, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            try await Task.sleep(for: .milliseconds(200))
            sse.cancel()
            let cancelled = await backend.waitForCancel("disconnect-test", timeout: .seconds(5))
            XCTAssertTrue(cancelled)
        }
    }

    /// A request that completes normally is never cancelled.
    func testCompletedRequestsAreNotCancelled() async throws {
        let backend = FakeBackend.simple()
        try await TestSupport.app(backend).test(.live) { client in
            let port = try XCTUnwrap(client.port)
            let gateway = GatewayClient(baseURL: URL(string: "http://127.0.0.1:\(port)")!)
            let answer = try await gateway.answer(.init(question: "q"))
            XCTAssertEqual(answer.answer, "The answer is 42.")
            let spans = SpanCollector()
            let streamed = try await gateway.streamAnswer(.init(question: "q")) { spans.add($0.text) }
            XCTAssertEqual(streamed.answer, "The answer is 42.")
            XCTAssertEqual(spans.all, ["The ", "answer ", "is 42."])
        }
        try await Task.sleep(for: .milliseconds(200))
        XCTAssertTrue(backend.cancelled.isEmpty, "\(backend.cancelled)")
    }

    func testClientReportsErrorsWithTheirCode() async throws {
        let backend = FakeBackend { _ in [.span(0, "so far"), .sleep(5000), .done()] }
        try await TestSupport.app(backend).test(.live) { client in
            let gateway = GatewayClient(baseURL: URL(string: "http://127.0.0.1:\(client.port!)")!)
            do {
                _ = try await gateway.answer(.init(question: "q", deadlineMs: 100))
                XCTFail("expected a 504")
            } catch let GatewayClient.ClientError.http(status, error) {
                XCTAssertEqual(status, 504)
                XCTAssertEqual(error?.code, "deadline_exceeded")
                XCTAssertEqual(error?.partial?.answer, "so far")
            }
        }
    }
}

final class SpanCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var texts: [String] = []
    func add(_ s: String) { lock.withLock { texts.append(s) } }
    var all: [String] { lock.withLock { texts } }
}

/// Answer responses say `Connection: close` (the connection is watched for hang-ups, after
/// which Hummingbird closes it), so a pooling client (AsyncHTTPClient here) reconnects instead
/// of writing into a closed socket; other endpoints keep the connection alive.
final class KeepAliveTests: XCTestCase {
    func testPoolingClientsKeepWorkingAcrossRequests() async throws {
        let backend = FakeBackend.simple()
        try await TestSupport.app(backend).test(.ahc(.http)) { client in
            for i in 0..<4 {
                let r = try await TestSupport.post(client, "/v1/answer", #"{"question": "q", "stream": \#(i % 2 == 1)}"#)
                XCTAssertEqual(r.status, .ok, "request \(i)")
                XCTAssertEqual(r.headers[.connection], "close")
                let bad = try await TestSupport.post(client, "/v1/answer", #"{"question": ""}"#)
                XCTAssertEqual(bad.status, .unprocessableContent)
                let h = try await client.execute(uri: "/healthz", method: .get)
                XCTAssertEqual(h.status, .ok)
            }
        }
    }
}
