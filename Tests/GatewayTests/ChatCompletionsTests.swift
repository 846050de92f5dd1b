import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Wire
import XCTest
@testable import Gateway

final class ChatCompletionsTests: XCTestCase {
    private func object(_ text: String) throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    func testNonStreamingCompletionHasTheOpenAIShapeAndRouting() async throws {
        let backend = FakeBackend.simple()
        try await TestSupport.app(backend).test(.router) { client in
            let r = try await TestSupport.post(client, "/v1/chat/completions", """
                {"model": "mambaformer", "messages": [
                  {"role": "system", "content": "Abstract: aspirin lowers fever."},
                  {"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "Hello"},
                  {"role": "user", "content": [{"type": "text", "text": "Does aspirin "}, {"type": "text", "text": "help?"}]}],
                 "max_tokens": 20, "temperature": 0.2, "user": "ward-7", "presence_penalty": 0, "n": 1}
                """)
            XCTAssertEqual(r.status, .ok, TestSupport.text(r))
            let o = try self.object(TestSupport.text(r))
            XCTAssertEqual(o["object"] as? String, "chat.completion")
            XCTAssertEqual(o["model"] as? String, "mambaformer")
            XCTAssertTrue((o["id"] as? String)?.hasPrefix("chatcmpl-") ?? false)
            XCTAssertNotNil(o["created"] as? Int)
            let choice = try XCTUnwrap((o["choices"] as? [[String: Any]])?.first)
            XCTAssertEqual(choice["index"] as? Int, 0)
            XCTAssertEqual(choice["finish_reason"] as? String, "stop")
            let message = try XCTUnwrap(choice["message"] as? [String: Any])
            XCTAssertEqual(message["role"] as? String, "assistant")
            XCTAssertEqual(message["content"] as? String, "The answer is 42.")
            let usage = try XCTUnwrap(o["usage"] as? [String: Any])
            XCTAssertEqual(usage["total_tokens"] as? Int, 14)
            let routing = try XCTUnwrap(o["mambaformer"] as? [String: Any])
            XCTAssertEqual((routing["trace"] as? [Any])?.count, 3)
            XCTAssertEqual((routing["usage"] as? [String: Any])?["et5_tokens"] as? Int, 3)
        }
        let sent = try XCTUnwrap(backend.submitted.first)
        XCTAssertEqual(sent.question, "Does aspirin help?")
        XCTAssertEqual(sent.context, "Abstract: aspirin lowers fever.\n\nuser: Hi\n\nassistant: Hello")
        XCTAssertEqual(sent.maxNewTokens, 20)
    }

    func testStreamingChunksEndWithDone() async throws {
        let backend = FakeBackend.simple()
        try await TestSupport.app(backend).test(.router) { client in
            let r = try await TestSupport.post(client, "/v1/chat/completions", """
                {"model": "m", "messages": [{"role": "user", "content": "q"}], "stream": true,
                 "stream_options": {"include_usage": true}, "max_completion_tokens": 10}
                """)
            XCTAssertEqual(r.status, .ok)
            XCTAssertEqual(r.headers[.contentType], "text/event-stream; charset=utf-8")
            let events = TestSupport.sse(r)
            XCTAssertEqual(events.last?.data, "[DONE]")
            XCTAssertTrue(events.allSatisfy { $0.name == "message" })
            let chunks = try events.dropLast().map { try self.object($0.data) }
            XCTAssertTrue(chunks.allSatisfy { $0["object"] as? String == "chat.completion.chunk" })
            XCTAssertEqual(Set(chunks.compactMap { $0["id"] as? String }).count, 1)
            // role opener, three content chunks, finish chunk, usage chunk
            XCTAssertEqual(chunks.count, 6)
            func choice(_ c: [String: Any]) -> [String: Any]? { (c["choices"] as? [[String: Any]])?.first }
            XCTAssertEqual((choice(chunks[0])?["delta"] as? [String: Any])?["role"] as? String, "assistant")
            XCTAssertTrue(choice(chunks[0])?["finish_reason"] is NSNull)
            let content = chunks[1...3].compactMap { (choice($0)?["delta"] as? [String: Any])?["content"] as? String }
            XCTAssertEqual(content.joined(), "The answer is 42.")
            XCTAssertEqual((chunks[2]["mambaformer"] as? [String: Any])?["expert"] as? String, "et5")
            XCTAssertEqual(choice(chunks[4])?["finish_reason"] as? String, "stop")
            XCTAssertNotNil((chunks[4]["mambaformer"] as? [String: Any])?["trace"])
            XCTAssertEqual((chunks[5]["choices"] as? [Any])?.count, 0)
            XCTAssertEqual((chunks[5]["usage"] as? [String: Any])?["completion_tokens"] as? Int, 7)
        }
        XCTAssertEqual(backend.submitted.first?.maxNewTokens, 10)
    }

    func testUnsupportedOrInvalidChatRequests() async throws {
        let backend = FakeBackend.simple()
        let cases: [(String, HTTPResponse.Status, String)] = [
            (#"{"messages": [{"role": "user", "content": "q"}], "n": 2}"#, .unprocessableContent, "unsupported"),
            (#"{"messages": []}"#, .unprocessableContent, "invalid_value"),
            (#"{"model": "m"}"#, .unprocessableContent, "missing_field"),
            (#"{"messages": [{"role": "tool", "content": []}]}"#, .unprocessableContent, "empty_question"),
            (#"{"messages": [{"role": "wizard", "content": "a"}]}"#, .unprocessableContent, "invalid_value"),
            (#"{"messages": [{"role": "user", "content": 5}]}"#, .unprocessableContent, "invalid_type"),
            (#"{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#, .unprocessableContent, "unsupported"),
            (#"{"messages": [{"role": "user", "content": ""}]}"#, .unprocessableContent, "empty_question"),
            (#"{"messages": [{"role": "user", "content": "q"}], "max_tokens": 9999}"#, .unprocessableContent, "max_tokens_too_large"),
            (#"{"messages": "#, .badRequest, "invalid_json"),
            (#"{"messages": [{"role": "user", "content": "q"}], "stop": ["a", "b", "c", "d", "e"]}"#, .unprocessableContent, "invalid_value"),
        ]
        try await TestSupport.app(backend).test(.router) { client in
            for (json, status, code) in cases {
                let r = try await TestSupport.post(client, "/v1/chat/completions", json)
                XCTAssertEqual(r.status, status, json)
                XCTAssertEqual(try TestSupport.error(r).code, code, json)
            }
        }
        XCTAssertTrue(backend.submitted.isEmpty)
    }

    /// The last message is the question whatever its role (a tool's result, an assistant's
    /// prefix): what the spec allows is answered, not refused.
    func testTheLastMessageOfAnyRoleIsTheQuestion() async throws {
        let backend = FakeBackend.simple()
        try await TestSupport.app(backend).test(.router) { client in
            let r = try await TestSupport.post(client, "/v1/chat/completions", #"""
                {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Look it up."},
                              {"role": "tool", "content": "Gingivitis is inflammation of the gums."}]}
                """#)
            XCTAssertEqual(r.status, .ok, TestSupport.text(r))
        }
        XCTAssertEqual(backend.submitted.last?.question, "Gingivitis is inflammation of the gums.")
        XCTAssertEqual(backend.submitted.last?.context, "Be brief.\n\nuser: Look it up.")
    }

    func testStreamErrorIsADataChunk() async throws {
        let backend = FakeBackend { _ in [.span(0, "A"), .error(.internalError, "expert crashed")] }
        try await TestSupport.app(backend).test(.router) { client in
            let r = try await TestSupport.post(client, "/v1/chat/completions",
                                               #"{"messages": [{"role": "user", "content": "q"}], "stream": true}"#)
            let events = TestSupport.sse(r)
            let last = try self.object(try XCTUnwrap(events.last).data)
            XCTAssertEqual((last["error"] as? [String: Any])?["code"] as? String, "upstream_error")
            XCTAssertFalse(events.contains { $0.data == "[DONE]" })
        }
    }
}
