import Foundation
@testable import Gateway
import GatewayClient
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Wire
import XCTest

/// `logprobs` / `top_logprobs` on both endpoints: each token's log-probability under the expert
/// that generated it, and that expert's most likely alternatives, in our shape on /v1/answer and
/// OpenAI's on the chat endpoint. The fake router's answer: "The " (EMamba, 2 tokens) |
/// "answer " (ET5, 3) | "is 42." (EMamba, 2).
final class LogprobsTests: XCTestCase {
    func testAnswerEndpointGivesEveryTokenWithItsExpertAndAlternatives() async throws {
        let backend = FakeBackend.simple()
        try await TestSupport.app(backend).test(.router) { client in
            let r = try await TestSupport.post(client, "/v1/answer", #"{"question": "q", "logprobs": true, "top_logprobs": 2}"#)
            XCTAssertEqual(r.status, .ok, TestSupport.text(r))
            let answer = try TestSupport.decode(AnswerResponse.self, r)
            let entries = try XCTUnwrap(answer.logprobs)
            XCTAssertEqual(entries.count, 7)
            XCTAssertEqual(entries.map(\.expert), ["emamba", "emamba", "et5", "et5", "et5", "emamba", "emamba"])
            XCTAssertEqual(entries.map(\.token).joined(), "The answer is 42.")
            XCTAssertEqual(entries[1].logprob, -0.5)
            XCTAssertEqual(entries[0].topLogprobs, [.init(token: "alt0", logprob: -1), .init(token: "alt1", logprob: -2)])
            XCTAssertEqual(backend.submitted.last?.topLogprobs, 2, "the alternatives are asked of the experts")

            let plain = try TestSupport.decode(AnswerResponse.self, try await TestSupport.post(client, "/v1/answer", #"{"question": "q"}"#))
            XCTAssertNil(plain.logprobs)
            XCTAssertEqual(backend.submitted.last?.topLogprobs, 0)

            // Streaming: each span event carries its own tokens.
            let s = try await TestSupport.post(client, "/v1/answer", #"{"question": "q", "logprobs": true, "stream": true}"#)
            let spans = try TestSupport.sse(s).filter { $0.name == "span" }.map { try JSONDecoder().decode(SpanEvent.self, from: Data($0.data.utf8)) }
            XCTAssertEqual(spans.map { $0.logprobs?.count ?? -1 }, [2, 3, 2])
        }
    }

    func testAStopStringCutsTheTokensToo() async throws {
        try await TestSupport.app(FakeBackend.simple()).test(.router) { client in
            let r = try await TestSupport.post(client, "/v1/answer", #"{"question": "q", "logprobs": true, "stop": "is 42"}"#)
            let answer = try TestSupport.decode(AnswerResponse.self, r)
            XCTAssertEqual(answer.answer, "The answer ")
            XCTAssertEqual(answer.logprobs?.map(\.token).joined(), "The answer ", "no token of the stop string or after it")
            XCTAssertEqual(answer.logprobs?.count, 5)
        }
    }

    func testChatCompletionsUseOpenAIsShape() async throws {
        try await TestSupport.app(FakeBackend.simple()).test(.router) { client in
            let r = try await TestSupport.post(client, "/v1/chat/completions",
                #"{"messages": [{"role": "user", "content": "q"}], "logprobs": true, "top_logprobs": 1}"#)
            XCTAssertEqual(r.status, .ok, TestSupport.text(r))
            let object = try JSONSerialization.jsonObject(with: Data(TestSupport.text(r).utf8)) as? [String: Any]
            let choice = try XCTUnwrap((object?["choices"] as? [[String: Any]])?.first)
            let logprobs = try XCTUnwrap(choice["logprobs"] as? [String: Any])
            XCTAssertTrue(logprobs["refusal"] is NSNull)
            let content = try XCTUnwrap(logprobs["content"] as? [[String: Any]])
            XCTAssertEqual(content.count, 7)
            XCTAssertEqual(content[0]["token"] as? String, "The ")
            XCTAssertEqual(content[0]["bytes"] as? [Int], Array("The ".utf8).map(Int.init))
            XCTAssertEqual((content[0]["top_logprobs"] as? [[String: Any]])?.first?["token"] as? String, "alt0")

            let plain = try await TestSupport.post(client, "/v1/chat/completions", #"{"messages": [{"role": "user", "content": "q"}]}"#)
            let plainChoice = ((try JSONSerialization.jsonObject(with: Data(TestSupport.text(plain).utf8)) as? [String: Any])?["choices"] as? [[String: Any]])?.first
            XCTAssertTrue(plainChoice?["logprobs"] is NSNull, "\"logprobs\": null when not asked, as OpenAI")

            let s = try await TestSupport.post(client, "/v1/chat/completions",
                #"{"messages": [{"role": "user", "content": "q"}], "logprobs": true, "stream": true}"#)
            let counts = try TestSupport.text(s).components(separatedBy: "\n\n").filter { $0.hasPrefix("data: {") }.compactMap { chunk -> Int? in
                let object = try JSONSerialization.jsonObject(with: Data(chunk.dropFirst(6).utf8)) as? [String: Any]
                let choice = (object?["choices"] as? [[String: Any]])?.first
                return ((choice?["logprobs"] as? [String: Any])?["content"] as? [Any])?.count
            }
            XCTAssertEqual(counts, [2, 3, 2], "each content chunk carries its tokens")
        }
    }

    func testLogprobsAreValidated() async throws {
        try await TestSupport.app(FakeBackend.simple()).test(.router) { client in
            for body in [#"{"question": "q", "logprobs": true, "top_logprobs": 6}"#, #"{"question": "q", "top_logprobs": -1}"#,
                         #"{"question": "q", "logprobs": "yes"}"#] {
                let r = try await TestSupport.post(client, "/v1/answer", body)
                XCTAssertEqual(r.status, .unprocessableContent, body)
            }
            // Without `logprobs`, `top_logprobs` asks for nothing (the spec allows the pair).
            let ignored = try TestSupport.decode(AnswerResponse.self, try await TestSupport.post(client, "/v1/answer",
                #"{"question": "q", "logprobs": false, "top_logprobs": 2}"#))
            XCTAssertNil(ignored.logprobs)
            let chat = try await TestSupport.post(client, "/v1/chat/completions",
                #"{"messages": [{"role": "user", "content": "q"}], "logprobs": true, "top_logprobs": 20}"#)
            XCTAssertEqual(chat.status, .unprocessableContent, "more than 5 alternatives is refused, not silently cut")
        }
    }
}
