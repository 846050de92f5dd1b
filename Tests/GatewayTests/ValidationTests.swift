import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Wire
import XCTest
@testable import Gateway

/// Bad input of every kind gets a typed JSON error with the right status — never 500, never a crash.
final class ValidationTests: XCTestCase {
    private func expect(_ json: String, _ status: HTTPResponse.Status, _ code: String, path: String = "/v1/answer",
                        file: StaticString = #filePath, line: UInt = #line) async throws {
        let backend = FakeBackend.simple()
        try await TestSupport.app(backend).test(.router) { client in
            let r = try await TestSupport.post(client, path, json)
            XCTAssertEqual(r.status, status, "\(json) → \(TestSupport.text(r))", file: file, line: line)
            let e = try TestSupport.error(r, file: file, line: line)
            XCTAssertEqual(e.code, code, e.message, file: file, line: line)
        }
        XCTAssertTrue(backend.submitted.isEmpty, "invalid requests never reach the router", file: file, line: line)
    }

    func testMalformedJSON() async throws {
        try await expect(#"{"question": "q""#, .badRequest, "invalid_json")
        try await expect(#"{"question": 'q'}"#, .badRequest, "invalid_json")
        try await expect("", .badRequest, "invalid_json")
        try await expect(#"{"question": "q"} trailing"#, .badRequest, "invalid_json")
        // Foundation's parser would accept these; JSON does not.
        try await expect(#"{"question": "q",}"#, .badRequest, "invalid_json")
        try await expect(#"{"question": "q", "stop": [1, ]}"#, .badRequest, "invalid_json")
    }

    func testANumberBeyondDoubleIsNamed() async throws {
        try await TestSupport.app(FakeBackend.simple()).test(.router) { client in
            let r = try await TestSupport.post(client, "/v1/answer", #"{"question": "q", "max_tokens": 1e400}"#)
            XCTAssertEqual(r.status, .badRequest)
            let e = try TestSupport.error(r)
            XCTAssertEqual(e.code, "invalid_json")
            XCTAssertTrue(e.message.contains("`max_tokens` is out of range"), e.message)
        }
    }

    func testTrailingCommaScanIgnoresStrings() {
        XCTAssertNil(RequestParsing.trailingComma(Array(#"{"question": "a,}", "context": "\",]"}"#.utf8)))
        XCTAssertEqual(RequestParsing.trailingComma(Array(#"{"a": 1 , }"#.utf8)), 8)
        XCTAssertNil(RequestParsing.trailingComma(Array(#"[1, 2]"#.utf8)))
    }

    func testNotAnObject() async throws {
        try await expect(#"["question"]"#, .unprocessableContent, "invalid_type")
        try await expect(#""q""#, .unprocessableContent, "invalid_type")
    }

    func testInvalidUTF8() async throws {
        let backend = FakeBackend.simple()
        try await TestSupport.app(backend).test(.router) { client in
            var body = ByteBuffer(string: #"{"question": "caf"#)
            body.writeBytes([0xC3, 0x28, 0xFF])
            body.writeString(#""}"#)
            let r = try await client.execute(uri: "/v1/answer", method: .post, body: body)
            XCTAssertEqual(r.status, .badRequest)
            XCTAssertEqual(try TestSupport.error(r).code, "invalid_utf8")
        }
    }

    func testWrongTypes() async throws {
        try await expect(#"{"question": 42}"#, .unprocessableContent, "invalid_type")
        try await expect(#"{"question": "q", "max_tokens": "10"}"#, .unprocessableContent, "invalid_type")
        try await expect(#"{"question": "q", "max_tokens": 1.5}"#, .unprocessableContent, "invalid_type")
        try await expect(#"{"question": "q", "stream": "yes"}"#, .unprocessableContent, "invalid_type")
        try await expect(#"{"question": "q", "temperature": true}"#, .unprocessableContent, "invalid_type")
        try await expect(#"{"question": "q", "context": ["a"]}"#, .unprocessableContent, "invalid_type")
    }

    func testOutOfRangeValues() async throws {
        try await expect(#"{"question": "q", "cost_weight": 1.5}"#, .unprocessableContent, "invalid_value")
        try await expect(#"{"question": "q", "expert": "gpt"}"#, .unprocessableContent, "invalid_value")
        try await expect(#"{"question": "q", "seed": -1}"#, .unprocessableContent, "invalid_value")
        try await expect(#"{"question": "q", "max_tokens": 0}"#, .unprocessableContent, "invalid_value")
        try await expect(#"{"question": "q", "deadline_ms": 0}"#, .unprocessableContent, "invalid_value")
    }

    func testUnknownFieldsAreRefusedOnTheNativeAPI() async throws {
        try await expect(#"{"question": "q", "max_token": 10}"#, .unprocessableContent, "unknown_field")
    }

    func testEmptyOrMissingQuestion() async throws {
        try await expect(#"{"question": "  \n "}"#, .unprocessableContent, "empty_question")
        try await expect(#"{"question": null}"#, .unprocessableContent, "missing_field")
        try await expect(#"{"context": "c"}"#, .unprocessableContent, "missing_field")
    }

    func testLimits() async throws {
        try await expect(#"{"question": "q", "max_tokens": 257}"#, .unprocessableContent, "max_tokens_too_large")
        let long = String(repeating: "é", count: 600)
        try await expect(#"{"question": "\#(long)", "context": "\#(long)"}"#, .unprocessableContent, "prompt_too_long")
        let huge = String(repeating: "x", count: 5000)
        try await expect(#"{"question": "\#(huge)"}"#, .contentTooLarge, "body_too_large")
    }

    func testBodyTooLargeWithoutContentLength() async throws {
        // Chunked upload (no Content-Length): the limit is enforced while reading.
        let backend = FakeBackend.simple()
        try await TestSupport.app(backend).test(.live) { client in
            let huge = #"{"question": ""# + String(repeating: "x", count: 100_000) + #""}"#
            let r = try await client.execute(uri: "/v1/answer", method: .post,
                                             headers: [.transferEncoding: "chunked"], body: ByteBuffer(string: huge))
            XCTAssertEqual(r.status, .contentTooLarge)
        }
    }

    func testUnknownRouteIsJSON404() async throws {
        try await TestSupport.app(FakeBackend.simple()).test(.router) { client in
            let r = try await client.execute(uri: "/v2/nothing", method: .get)
            XCTAssertEqual(r.status, .notFound)
            XCTAssertEqual(try TestSupport.error(r).code, "not_found")
            let g = try await client.execute(uri: "/v1/answer", method: .get)
            XCTAssertTrue([.notFound, .methodNotAllowed].contains(g.status))
            _ = try TestSupport.error(g)
        }
    }

    /// Random bytes and mutated JSON never produce a 5xx.
    func testFuzzedBodiesNeverFailTheServer() async throws {
        let backend = FakeBackend.simple()
        let seeds = [#"{"question": "q", "max_tokens": 5, "stream": false}"#, #"{"messages": [{"role": "user", "content": "hi"}]}"#]
        try await TestSupport.app(backend).test(.router) { client in
            var generator = SystemRandomNumberGenerator()
            for i in 0..<200 {
                var bytes = Array(seeds[i % 2].utf8)
                for _ in 0..<(1 + i % 4) {
                    let at = Int.random(in: 0..<bytes.count, using: &generator)
                    bytes[at] = UInt8.random(in: 0...255, using: &generator)
                }
                for path in ["/v1/answer", "/v1/chat/completions"] {
                    let r = try await client.execute(uri: path, method: .post, body: ByteBuffer(bytes: bytes))
                    XCTAssertLessThan(r.status.code, 500, "\(path) \(bytes) → \(TestSupport.text(r))")
                }
            }
        }
    }

    func testParsingUnits() throws {
        let config = TestSupport.config()
        let p = try RequestParsing.answer(Array(#"{"question": "q", "expert": "auto", "top_k": 40}"#.utf8), config: config)
        XCTAssertEqual(p.policy.forced, .unspecified)
        XCTAssertEqual(p.sampling.topK, 40)
        XCTAssertEqual(p.maxTokens, 64)
        XCTAssertEqual(p.deadlineMs, config.defaultDeadlineMs)
        XCTAssertFalse(p.stream)
    }
}
