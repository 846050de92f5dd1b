import Foundation
@testable import Gateway
import GatewayClient
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Wire
import XCTest

/// `stop` (OpenAI's): the answer ends before the first stop string, matched on the merged
/// answer across span and expert boundaries; streams never send text that could still begin a
/// match. The fake router's answer is "The " | "answer " | "is 42." (three spans, two experts).
final class StopTests: XCTestCase {
    // MARK: The matcher

    func testAMatchInsideASpanEndsTheAnswerBeforeIt() {
        var m = StopMatcher(["42"])
        XCTAssertEqual(m.append("The answer ").release, "The answer ")
        let last = m.append("is 42.")
        XCTAssertEqual(last.release, "is ")
        XCTAssertTrue(last.matched)
        XCTAssertEqual(m.answer, "The answer is ")
        XCTAssertEqual(m.flush(), "")
    }

    func testAMatchAcrossSpansIsFoundAndItsStartWasHeldBack() {
        var m = StopMatcher(["nswer i"])
        let first = m.append("The an")
        XCTAssertEqual(first.release, "The a", "\"n\" could begin the stop string: held back")
        XCTAssertFalse(first.matched)
        XCTAssertEqual(m.append("swer ").release, "", "still a prefix of the stop string")
        let third = m.append("is 42.")
        XCTAssertTrue(third.matched)
        XCTAssertEqual(third.release, "")
        XCTAssertEqual(m.answer, "The a")
    }

    func testHeldTextThatBeginsNoMatchIsReleasedByTheNextSpanOrAtTheEnd() {
        var m = StopMatcher(["END!", "xyz"])
        XCTAssertEqual(m.append("abc EN").release, "abc ")
        XCTAssertEqual(m.append("D").release, "", "\"END\" is still a prefix")
        XCTAssertEqual(m.append(" more").release, "END more")
        XCTAssertEqual(m.append("x").release, "")
        XCTAssertEqual(m.flush(), "x", "no more text: what was held goes out")
        XCTAssertEqual(m.answer, "abc END morex")
    }

    func testTheEarliestOfSeveralStopsWinsAndUnicodeIsWhole() {
        var m = StopMatcher(["🦷", "é."])
        let r = m.append("Café. Then 🦷")
        XCTAssertTrue(r.matched)
        XCTAssertEqual(r.release, "Caf")
        XCTAssertEqual(m.answer, "Caf")
        var n = StopMatcher(["Th"])
        XCTAssertTrue(n.append("The").matched)
        XCTAssertEqual(n.answer, "", "a match at the very start leaves an empty answer")
    }

    // MARK: Through the endpoints

    func testAnswerEndpointStopsAndTellsTheRouterToStop() async throws {
        let backend = FakeBackend.simple(delayMs: 10)
        try await TestSupport.app(backend).test(.router) { client in
            let r = try await TestSupport.post(client, "/v1/answer", #"{"question": "q", "stop": ["swer i"]}"#)
            XCTAssertEqual(r.status, .ok)
            let answer = try TestSupport.decode(AnswerResponse.self, r)
            XCTAssertEqual(answer.answer, "The an")
            XCTAssertEqual(answer.finishReason, "stop")
            let s = try await TestSupport.post(client, "/v1/answer", #"{"question": "q", "stop": "swer i", "stream": true}"#)
            let events = TestSupport.sse(s)
            XCTAssertEqual(events.last?.name, "done")
            let texts = try events.filter { $0.name == "span" }.map { try JSONDecoder().decode(SpanEvent.self, from: Data($0.data.utf8)).text }
            XCTAssertEqual(texts.joined(), "The an", "the stream sends exactly the answer, nothing of the stop string")
            let done = try JSONDecoder().decode(AnswerResponse.self, from: Data(events.last!.data.utf8))
            XCTAssertEqual(done.finishReason, "stop")
        }
        try await Task.sleep(nanoseconds: 50_000_000)
        XCTAssertEqual(backend.cancelled.count, 2, "the router stops generating what nobody wants")
    }

    func testAHeldTailThatMatchedNothingIsSentBeforeDone() async throws {
        try await TestSupport.app(FakeBackend.simple()).test(.router) { client in
            // "42!" never comes: "42" is held after the last span and released as `text` at the end.
            let s = try await TestSupport.post(client, "/v1/answer", #"{"question": "q", "stop": ["42!"], "stream": true}"#)
            let events = TestSupport.sse(s)
            XCTAssertEqual(events.map(\.name), ["span", "span", "span", "done"])
            let texts = try events.filter { $0.name == "span" }.map { try JSONDecoder().decode(SpanEvent.self, from: Data($0.data.utf8)).text }
            XCTAssertEqual(texts.joined(), "The answer is 42.", "only a tail that is a prefix is held: \"42.\" is not")
            let held = try await TestSupport.post(client, "/v1/answer", #"{"question": "q", "stop": ["42.!"], "stream": true}"#)
            let heldEvents = TestSupport.sse(held)
            XCTAssertEqual(heldEvents.map(\.name), ["span", "span", "span", "text", "done"])
            let streamed = try heldEvents.dropLast().map { event -> String in
                let object = try JSONSerialization.jsonObject(with: Data(event.data.utf8)) as? [String: Any]
                return object?["text"] as? String ?? ""
            }
            XCTAssertEqual(streamed.joined(), "The answer is 42.")
            let done = try JSONDecoder().decode(AnswerResponse.self, from: Data(heldEvents.last!.data.utf8))
            XCTAssertEqual(done.finishReason, "eos")
            XCTAssertEqual(done.answer, "The answer is 42.")
        }
    }

    func testChatCompletionsTakeStopAsOpenAIDoes() async throws {
        try await TestSupport.app(FakeBackend.simple()).test(.router) { client in
            let r = try await TestSupport.post(client, "/v1/chat/completions",
                #"{"model": "m", "messages": [{"role": "user", "content": "q"}], "stop": ["42"]}"#)
            XCTAssertEqual(r.status, .ok, TestSupport.text(r))
            let object = try JSONSerialization.jsonObject(with: Data(TestSupport.text(r).utf8)) as? [String: Any]
            let choice = (object?["choices"] as? [[String: Any]])?.first
            XCTAssertEqual((choice?["message"] as? [String: Any])?["content"] as? String, "The answer is ")
            XCTAssertEqual(choice?["finish_reason"] as? String, "stop")
            // Streaming: the content deltas add up to the answer, no byte of the stop string.
            let s = try await TestSupport.post(client, "/v1/chat/completions",
                #"{"model": "m", "messages": [{"role": "user", "content": "q"}], "stop": "is 4", "stream": true}"#)
            let chunks = TestSupport.text(s).components(separatedBy: "\n\n").filter { $0.hasPrefix("data: {") }
            let content = try chunks.map { chunk -> String in
                let object = try JSONSerialization.jsonObject(with: Data(chunk.dropFirst(6).utf8)) as? [String: Any]
                let delta = ((object?["choices"] as? [[String: Any]])?.first?["delta"]) as? [String: Any]
                return delta?["content"] as? String ?? ""
            }.joined()
            XCTAssertEqual(content, "The answer ")
        }
    }

    func testStopIsValidated() async throws {
        try await TestSupport.app(FakeBackend.simple()).test(.router) { client in
            for body in [#"{"question": "q", "stop": ["a", "b", "c", "d", "e"]}"#, #"{"question": "q", "stop": [""]}"#,
                         #"{"question": "q", "stop": 7}"#, #"{"question": "q", "stop": [1]}"#,
                         "{\"question\": \"q\", \"stop\": [\"\(String(repeating: "x", count: 129))\"]}"] {
                let r = try await TestSupport.post(client, "/v1/answer", body)
                XCTAssertEqual(r.status.code / 100, 4, body)
                XCTAssertTrue(try TestSupport.error(r).message.contains("stop"), body)
            }
        }
    }
}
