import Foundation
@testable import Gateway
import GatewayClient
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Wire
import XCTest

private let requestIdHeader = HTTPField.Name("X-Request-Id")!

final class AnswerEndpointTests: XCTestCase {
    func testAnswerJSONMergesSpansAndReportsRouting() async throws {
        let backend = FakeBackend.simple()
        try await TestSupport.app(backend).test(.router) { client in
            let r = try await TestSupport.post(client, "/v1/answer",
                #"{"question": "What is it?", "context": "ctx", "max_tokens": 32, "cost_weight": 0.3, "expert": "et5", "temperature": 0.5, "top_p": 0.9, "seed": 18446744073709551615}"#,
                headers: [.contentType: "application/json", requestIdHeader: "abc-123"])
            XCTAssertEqual(r.status, .ok)
            XCTAssertEqual(r.headers[requestIdHeader], "abc-123")
            let answer = try TestSupport.decode(AnswerResponse.self, r)
            XCTAssertEqual(answer.id, "abc-123")
            XCTAssertEqual(answer.answer, "The answer is 42.")
            XCTAssertEqual(answer.finishReason, "eos")
            XCTAssertEqual(answer.usage, .init(promptTokens: 7, completionTokens: 7, emambaTokens: 4, et5Tokens: 3))
            XCTAssertEqual(answer.trace.map(\.expert), ["emamba", "et5", "emamba"])
            XCTAssertEqual(answer.trace.map(\.span), [0, 1, 2])
            XCTAssertEqual(answer.trace[1].tokens, 3)
            XCTAssertEqual(answer.trace[1].gateScore, 0.8)
            XCTAssertEqual(answer.trace[1].replica, "et5-0")
            XCTAssertEqual(answer.trace[1].ms, 1.234)
            XCTAssertEqual(answer.timings.queueMs, 1.5)
            XCTAssertGreaterThan(answer.timings.totalMs, 0)
            XCTAssertEqual(answer.seed, UInt64.max, "a sampled answer says its seed")
        }
        // What crossed the "wire": the id, the prompt, limits, policy, sampling, a deadline.
        let sent = try XCTUnwrap(backend.submitted.first)
        XCTAssertEqual(sent.requestId, "abc-123")
        XCTAssertEqual(sent.question, "What is it?")
        XCTAssertEqual(sent.context, "ctx")
        XCTAssertEqual(sent.maxNewTokens, 32)
        XCTAssertEqual(sent.policy, Policy(costWeight: 0.3, forced: .et5), "a cost weight given is sent as given")
        XCTAssertEqual(sent.sampling.temperature, 0.5)
        XCTAssertEqual(sent.sampling.topP, 0.9)
        XCTAssertEqual(sent.sampling.seed, UInt64.max)
        let now = UInt64(Date().timeIntervalSince1970 * 1000)
        XCTAssertGreaterThan(sent.deadlineUnixMs, now)
        XCTAssertLessThanOrEqual(sent.deadlineUnixMs, now + 30_000)
        XCTAssertGreaterThan(sent.deadlineMs, 0, "1.2: the time left travels too")
        XCTAssertLessThanOrEqual(sent.deadlineMs, 30_000)
    }

    /// A sampled request without a seed gets a fresh one, returned so that the answer can be
    /// reproduced; two such requests differ; a greedy answer has no seed.
    func testUnseededSampledRequestsGetAFreshSeedBack() async throws {
        let backend = FakeBackend.simple()
        try await TestSupport.app(backend).test(.router) { client in
            var seeds: [UInt64] = []
            for _ in 0..<2 {
                let r = try await TestSupport.post(client, "/v1/answer", #"{"question": "q", "temperature": 0.8}"#)
                let answer = try TestSupport.decode(AnswerResponse.self, r)
                let seed = try XCTUnwrap(answer.seed)
                XCTAssertLessThan(seed, 1 << 53, "exact in a JavaScript number")
                seeds.append(seed)
            }
            XCTAssertNotEqual(seeds[0], seeds[1])
            XCTAssertEqual(backend.submitted.map(\.sampling.seed), seeds, "the seed returned is the one sent")
            let greedy = try TestSupport.decode(AnswerResponse.self,
                                                try await TestSupport.post(client, "/v1/answer", #"{"question": "q"}"#))
            XCTAssertNil(greedy.seed)
            XCTAssertEqual(backend.submitted.last?.sampling.seed, 0)
        }
    }

    func testRequestIdIsGeneratedWhenAbsentOrUnsafe() async throws {
        let backend = FakeBackend.simple()
        try await TestSupport.app(backend).test(.router) { client in
            let a = try await TestSupport.post(client, "/v1/answer", #"{"question": "q"}"#)
            let generated = try XCTUnwrap(a.headers[requestIdHeader])
            XCTAssertEqual(generated.count, 36)   // a UUID
            let b = try await TestSupport.post(client, "/v1/answer", #"{"question": "q"}"#,
                                               headers: [requestIdHeader: "bad id\twith spaces"])
            XCTAssertNotEqual(b.headers[requestIdHeader], "bad id\twith spaces")
            let h = try await client.execute(uri: "/healthz", method: .get, headers: [requestIdHeader: "probe-1"])
            XCTAssertEqual(h.headers[requestIdHeader], "probe-1")
        }
        XCTAssertEqual(backend.submitted.count, 2)
        XCTAssertNotEqual(backend.submitted[0].requestId, backend.submitted[1].requestId)
    }

    func testDuplicatedAndOutOfOrderSpansAreMergedInOrderOnce() async throws {
        let backend = FakeBackend { _ in
            [.span(1, "B"), .span(0, "A"), .span(0, "A-retry"), .span(3, "D"), .span(1, "B-retry"), .span(2, "C"),
             .done(DoneStats(finish: .length, spans: 4))]
        }
        try await TestSupport.app(backend).test(.router) { client in
            let r = try await TestSupport.post(client, "/v1/answer", #"{"question": "q"}"#)
            XCTAssertEqual(r.status, .ok)
            let answer = try TestSupport.decode(AnswerResponse.self, r)
            XCTAssertEqual(answer.answer, "ABCD")
            XCTAssertEqual(answer.finishReason, "length")
            XCTAssertEqual(answer.trace.map(\.span), [0, 1, 2, 3])
            // Usage counts the answer the client got (2 tokens per fake span), not replaced spans.
            XCTAssertEqual(answer.usage.completionTokens, 8)

            let s = try await TestSupport.post(client, "/v1/answer", #"{"question": "q", "stream": true}"#)
            let events = TestSupport.sse(s)
            XCTAssertEqual(events.map(\.name), ["span", "span", "span", "span", "done"])
            let spans = try events.dropLast().map { try JSONDecoder().decode(SpanEvent.self, from: Data($0.data.utf8)) }
            XCTAssertEqual(spans.map(\.text), ["A", "B", "C", "D"])
            XCTAssertEqual(events.dropLast().map(\.id), ["0", "1", "2", "3"])
        }
    }

    func testStreamingSendsSpansThenDone() async throws {
        let backend = FakeBackend.simple(delayMs: 20)
        try await TestSupport.app(backend).test(.router) { client in
            let r = try await TestSupport.post(client, "/v1/answer", #"{"question": "q", "stream": true}"#)
            XCTAssertEqual(r.status, .ok)
            XCTAssertEqual(r.headers[.contentType], "text/event-stream; charset=utf-8")
            XCTAssertEqual(r.headers[.cacheControl], "no-cache")
            let events = TestSupport.sse(r)
            XCTAssertEqual(events.map(\.name), ["span", "span", "span", "done"])
            let span = try JSONDecoder().decode(SpanEvent.self, from: Data(events[1].data.utf8))
            XCTAssertEqual(span, SpanEvent(span: 1, text: "answer ", expert: "et5", replica: "et5-0", tokens: 3,
                                           gateScore: 0.8, ms: 1.234))
            let done = try JSONDecoder().decode(AnswerResponse.self, from: Data(events[3].data.utf8))
            XCTAssertEqual(done.answer, "The answer is 42.")
            XCTAssertEqual(done.trace.count, 3)
        }
    }

    func testAGapFailsClearlyInsteadOfTruncating() async throws {
        // Span 1 never comes; 2 does, then the router goes quiet.
        let backend = FakeBackend { _ in [.span(0, "A"), .span(2, "C"), .hang] }
        try await TestSupport.app(backend).test(.router) { client in
            let r = try await TestSupport.post(client, "/v1/answer", #"{"question": "q"}"#)
            XCTAssertEqual(r.status, .badGateway)
            let e = try TestSupport.error(r)
            XCTAssertEqual(e.code, "incomplete_answer")
            XCTAssertTrue(e.message.contains("span 1"), e.message)
            XCTAssertEqual(e.partial?.answer, "A")
            XCTAssertEqual(e.type, "server_error")

            // Streaming: span 0 went out, then an `error` event (never a `done` with "AC").
            let s = try await TestSupport.post(client, "/v1/answer", #"{"question": "q", "stream": true}"#)
            XCTAssertEqual(s.status, .ok)
            let events = TestSupport.sse(s)
            XCTAssertEqual(events.map(\.name), ["span", "error"])
            let body = try JSONDecoder().decode(ErrorEnvelope.self, from: Data(events[1].data.utf8)).error
            XCTAssertEqual(body.code, "incomplete_answer")
        }
        let cancelled = await backend.waitForCancel()
        XCTAssertTrue(cancelled, "the router must be told to stop")
    }

    func testDoneWithAMissingSpanIsAnError() async throws {
        let backend = FakeBackend { _ in [.span(0, "A"), .span(2, "C"), .done(DoneStats(finish: .eos, spans: 3))] }
        try await TestSupport.app(backend).test(.router) { client in
            let r = try await TestSupport.post(client, "/v1/answer", #"{"question": "q"}"#)
            XCTAssertEqual(r.status, .badGateway)
            XCTAssertEqual(try TestSupport.error(r).code, "incomplete_answer")
        }
    }

    func testDeadlineReturns504WithThePartialAnswer() async throws {
        let backend = FakeBackend { _ in [.span(0, "So far"), .sleep(5_000), .span(1, " never"), .done()] }
        try await TestSupport.app(backend).test(.router) { client in
            let r = try await TestSupport.post(client, "/v1/answer", #"{"question": "q", "deadline_ms": 200}"#)
            XCTAssertEqual(r.status, .gatewayTimeout)
            let e = try TestSupport.error(r)
            XCTAssertEqual(e.code, "deadline_exceeded")
            XCTAssertEqual(e.partial?.answer, "So far")
            XCTAssertEqual(e.partial?.finishReason, "deadline")
            XCTAssertEqual(e.partial?.trace.count, 1)
        }
        let cancelled = await backend.waitForCancel()
        XCTAssertTrue(cancelled)
    }

    func testRouterReportedDeadlineIs504Too() async throws {
        let backend = FakeBackend { _ in [.span(0, "part"), .done(DoneStats(finish: .deadline, spans: 1))] }
        try await TestSupport.app(backend).test(.router) { client in
            let r = try await TestSupport.post(client, "/v1/answer", #"{"question": "q"}"#)
            XCTAssertEqual(r.status, .gatewayTimeout)
            XCTAssertEqual(try TestSupport.error(r).partial?.answer, "part")
        }
    }

    func testRouterErrorsMapToStatuses() async throws {
        let cases: [(ErrorCode, HTTPResponse.Status, String)] = [
            (.overloaded, .tooManyRequests, "overloaded"),
            (.unavailable, .serviceUnavailable, "unavailable"),
            (.badRequest, .unprocessableContent, "rejected_by_router"),
            (.internalError, .badGateway, "upstream_error"),
            (.deadline, .gatewayTimeout, "deadline_exceeded"),
        ]
        for (code, status, name) in cases {
            let backend = FakeBackend { _ in [.error(code)] }
            try await TestSupport.app(backend).test(.router) { client in
                for stream in [false, true] {
                    let r = try await TestSupport.post(client, "/v1/answer", #"{"question": "q", "stream": \#(stream)}"#)
                    XCTAssertEqual(r.status, status, "\(code) stream=\(stream)")
                    XCTAssertEqual(try TestSupport.error(r).code, name)
                    if status == .tooManyRequests || status == .serviceUnavailable {
                        XCTAssertEqual(r.headers[.retryAfter], "1")
                    }
                }
            }
        }
    }

    func testUnreachableRouterIs503() async throws {
        let backend = FakeBackend.simple()
        backend.submitError = BackendSubmitError(code: .unavailable, message: "no heartbeat for 3 s")
        try await TestSupport.app(backend).test(.router) { client in
            let r = try await TestSupport.post(client, "/v1/answer", #"{"question": "q"}"#)
            XCTAssertEqual(r.status, .serviceUnavailable)
            XCTAssertEqual(r.headers[.retryAfter], "1")
            XCTAssertTrue(try TestSupport.error(r).message.contains("no heartbeat"))
        }
        struct Boom: Error {}
        backend.submitError = Boom()
        try await TestSupport.app(backend).test(.router) { client in
            let r = try await TestSupport.post(client, "/v1/answer", #"{"question": "q"}"#)
            XCTAssertEqual(r.status, .serviceUnavailable)
        }
    }

    func testStreamWithoutDoneOrErrorIsAnUpstreamError() async throws {
        let backend = FakeBackend { _ in [.span(0, "A")] }   // stream just ends
        try await TestSupport.app(backend).test(.router) { client in
            let r = try await TestSupport.post(client, "/v1/answer", #"{"question": "q"}"#)
            XCTAssertEqual(r.status, .badGateway)
            XCTAssertEqual(try TestSupport.error(r).code, "upstream_error")
        }
    }
}
