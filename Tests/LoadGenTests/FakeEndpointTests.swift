import XCTest
@testable import LoadGen

/// The load generator against a deliberately slow and erroring endpoint: every failure is
/// counted in its class, nothing is hidden, and sent == ok + errors.
final class FakeEndpointTests: XCTestCase {
    var fake: FakeGateway?
    override func tearDown() { fake?.shutdown() }

    let workload = try! Workload(prompts: [Prompt(question: "What is gingivitis?"), Prompt(question: "q", context: "long")])

    func run(_ behaviors: [FakeGateway.Behavior], mode: LoadPlan.Mode, requests: Int?, duration: Double? = nil,
             stream: Bool = false, timeout: Double = 5, api: LoadPlan.API = .native) async throws -> LoadReport {
        let fake = try FakeGateway(behaviors)
        self.fake = fake
        var plan = LoadPlan(target: fake.url, mode: mode)
        plan.api = api
        plan.maxRequests = requests
        plan.durationSeconds = duration
        plan.stream = stream
        plan.timeoutSeconds = timeout
        plan.maxTokens = ValueRange(8)
        let report = try await LoadRunner(plan: plan, workload: workload).run()
        XCTAssertEqual(report.sent, report.ok + report.errors, "sent = ok + errors")
        XCTAssertEqual(report.errorsByClass.values.reduce(0, +), report.errors)
        XCTAssertEqual(report.sent, fake.requestBodies.count + (report.errorsByClass["connect"] ?? 0))
        return report
    }

    func testEveryFailureIsCountedInItsClass() async throws {
        let started = Date()
        let report = try await run([
            .ok(delayMs: 0), .status(500, code: "internal_error"), .status(429, code: "overloaded"), .slow(ms: 3000),
            .close, .garbage, .status(422, code: "invalid_value"), .status(504, code: "deadline_exceeded"),
        ], mode: .closed(concurrency: 3), requests: 16, timeout: 0.4)
        XCTAssertEqual(report.sent, 16)
        XCTAssertEqual(report.ok, 2)
        XCTAssertEqual(report.errors, 14)
        XCTAssertEqual(report.errorsByClass["http_5xx"], 4, "500 and 504")
        XCTAssertEqual(report.errorsByClass["http_429"], 2)
        XCTAssertEqual(report.errorsByClass["http_4xx"], 2)
        XCTAssertEqual(report.errorsByClass["timeout"], 2)
        XCTAssertEqual(report.errorsByClass["protocol"], 4, "closed connection and unparsable body")
        XCTAssertEqual(report.errorsByClass["connect"], 0)
        XCTAssertEqual(report.errorCodes["http_429/overloaded"], 2)
        XCTAssertEqual(report.errorCodes["http_5xx/deadline_exceeded"], 2)
        XCTAssertEqual(report.latencyMs.count, 2, "latency percentiles describe successful answers")
        XCTAssertEqual(report.tokens.perExpert, ["emamba": 12, "et5": 4])
        XCTAssertEqual(report.tokens.switches, 4)
        XCTAssertLessThan(Date().timeIntervalSince(started), 2.5, "timeouts cut the slow requests short")
    }

    func testNothingListeningIsAConnectError() async throws {
        // Bind and close a port so that nothing listens on it.
        let fake = try FakeGateway([.ok(delayMs: 0)])
        let url = fake.url
        fake.shutdown()
        var plan = LoadPlan(target: url, mode: .closed(concurrency: 2))
        plan.maxRequests = 4
        plan.timeoutSeconds = 1
        let report = try await LoadRunner(plan: plan, workload: workload).run()
        XCTAssertEqual(report.sent, 4)
        XCTAssertEqual(report.errorsByClass["connect"], 4)
        XCTAssertEqual(report.ok, 0)
    }

    func testOpenLoopChargesTheWaitOfALateSend() async throws {
        // 50 req/s into a server that takes 150 ms, with one request in flight at a time: the
        // client falls behind its schedule. Latency from the intended time must grow with the
        // backlog while the service time stays ~150 ms (the coordinated-omission trap).
        let report = try await run([.ok(delayMs: 150)], mode: .open(schedule: .constant(50), maxInFlight: 1), requests: 8)
        XCTAssertEqual(report.ok, 8)
        XCTAssertLessThan(report.serviceTimeMs.max, 400)
        XCTAssertGreaterThan(report.serviceTimeMs.p50, 140)
        // The 8th request was due at t8 but could only start after 7 × 150 ms of work: it
        // waited at least 8 × 150 ms − t8 from its intended time.
        let t8 = try XCTUnwrap(Array(PoissonArrivals(schedule: .constant(50), seed: 1).prefix(8)).last)
        XCTAssertGreaterThan(report.latencyMs.max, (1.2 - t8) * 1000 * 0.95)
        XCTAssertGreaterThan(report.latencyMs.max, 2 * report.serviceTimeMs.max)
    }

    func testOpenLoopStopsAtTheDuration() async throws {
        let started = Date()
        let report = try await run([.ok(delayMs: 10)], mode: .open(schedule: .constant(40), maxInFlight: 64),
                                   requests: nil, duration: 1.0)
        let elapsed = Date().timeIntervalSince(started)
        XCTAssertEqual(Double(report.sent), 40, accuracy: 22, "Poisson(40) in one second")
        XCTAssertEqual(report.ok, report.sent)
        XCTAssertLessThan(elapsed, 2)
        XCTAssertGreaterThan(elapsed, 0.7)
    }

    func testStreamingMeasuresFirstSpanAndPerTokenLatency() async throws {
        let report = try await run([.stream(spans: 3, tokens: 4, gapMs: 80)], mode: .closed(concurrency: 2),
                                   requests: 4, stream: true)
        XCTAssertEqual(report.ok, 4, "\(report.errorSamples)")
        let ttfs = try XCTUnwrap(report.ttfsMs)
        XCTAssertEqual(ttfs.count, 4)
        XCTAssertGreaterThanOrEqual(ttfs.p50, 78)
        XCTAssertLessThan(ttfs.p50, 200)
        let perToken = try XCTUnwrap(report.perTokenMs)
        XCTAssertEqual(perToken.count, 4 * 2 * 4, "two gaps of 4 tokens per answer")
        XCTAssertEqual(perToken.p50, 20, accuracy: 8, "80 ms between spans of 4 tokens")
        XCTAssertGreaterThanOrEqual(report.latencyMs.p50, 240)
        XCTAssertEqual(report.tokens.perExpert, ["emamba": 48])
        XCTAssertTrue(fake?.requestBodies.allSatisfy { $0.contains(#""stream":true"#) } ?? false)
    }

    func testAnErrorEventAfterTheStreamBeganIsCounted() async throws {
        let report = try await run([.streamThenError, .stream(spans: 1, tokens: 2, gapMs: 5)], mode: .closed(concurrency: 1),
                                   requests: 4, stream: true)
        XCTAssertEqual(report.ok, 2)
        XCTAssertEqual(report.errorsByClass["stream_error"], 2)
        XCTAssertEqual(report.errorCodes["stream_error/deadline_exceeded"], 2)
    }

    func testStopIsNoticedBetweenSparseArrivals() async throws {
        let fake = try FakeGateway([.ok(delayMs: 0)])
        self.fake = fake
        var plan = LoadPlan(target: fake.url, mode: .open(schedule: .constant(0.05), maxInFlight: 4))
        plan.maxRequests = 100
        let runner = LoadRunner(plan: plan, workload: workload)
        Task { try await Task.sleep(nanoseconds: 300_000_000); runner.stop() }
        let started = Date()
        let report = try await runner.run()
        XCTAssertLessThan(Date().timeIntervalSince(started), 1.5, "one arrival per 20 s must not delay the stop")
        XCTAssertEqual(report.sent, report.ok + report.errors)
    }

    /// The report charts live replicas per pool from the gateway's /readyz (what an autoscaler did).
    func testReplicasPerPoolAreSampledFromReadyz() async throws {
        let report = try await run([.ok(delayMs: 0)], mode: .closed(concurrency: 1), requests: nil, duration: 1.5)
        let replicas = try XCTUnwrap(report.replicas)
        XCTAssertFalse(replicas.isEmpty)
        XCTAssertTrue(replicas.allSatisfy { $0.emamba == 2 && $0.et5 == 1 })
        XCTAssertTrue(HTMLReport.render(report).contains("Replicas per pool"))
    }

    func testClosedLoopStopsAtTheDuration() async throws {
        let started = Date()
        let report = try await run([.ok(delayMs: 40)], mode: .closed(concurrency: 2), requests: nil, duration: 0.5)
        XCTAssertLessThan(Date().timeIntervalSince(started), 1.2)
        XCTAssertEqual(Double(report.sent), 24, accuracy: 12, "2 clients × 0.5 s / ~40 ms")
        XCTAssertEqual(report.ok, report.sent)
    }

    func testStopEndsARunEarlyAndStillReports() async throws {
        let fake = try FakeGateway([.ok(delayMs: 50)])
        self.fake = fake
        var plan = LoadPlan(target: fake.url, mode: .closed(concurrency: 2))
        plan.maxRequests = 10_000
        let runner = LoadRunner(plan: plan, workload: workload)
        Task { try await Task.sleep(nanoseconds: 400_000_000); runner.stop() }
        let report = try await runner.run()
        XCTAssertGreaterThan(report.sent, 4)
        XCTAssertLessThan(report.sent, 40)
        XCTAssertEqual(report.sent, report.ok + report.errors)
    }

    // MARK: --api openai

    func testOpenAIRequestsNameTheListedModelAndCountUsage() async throws {
        let report = try await run([.chat, .status(429, code: "rate_limit_exceeded")], mode: .closed(concurrency: 2),
                                   requests: 6, api: .openai)
        XCTAssertEqual(report.ok, 3)
        XCTAssertEqual(report.errorsByClass["http_429"], 3)
        XCTAssertEqual(report.errorCodes["http_429/rate_limit_exceeded"], 3)
        XCTAssertEqual(report.tokens.completion, 24)
        XCTAssertEqual(report.tokens.prompt, 15)
        XCTAssertEqual(report.finishReasons["length"], 3)
        XCTAssertEqual(report.tokens.perExpert, [:], "an OpenAI server names no experts")
        XCTAssertEqual(report.api, "openai")
        XCTAssertEqual(report.model, "fake-model", "the first of GET /v1/models")
        let fake = try XCTUnwrap(fake)
        XCTAssertEqual(Set(fake.requestPaths), ["/v1/chat/completions"])
        let body = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(fake.requestBodies[0].utf8)) as? [String: Any])
        XCTAssertEqual(body["model"] as? String, "fake-model")
        XCTAssertEqual(body["max_tokens"] as? Int, 8)
        XCTAssertEqual(body["temperature"] as? Double, 0)
        XCTAssertNil(body["ignore_eos"], "sent only when asked for")
        let messages = try XCTUnwrap(body["messages"] as? [[String: String]])
        XCTAssertEqual(messages.last?["role"], "user")
    }

    func testOpenAIStreamsMeasureTimeToFirstTokenAndSpreadUsageOverChunks() async throws {
        // 4 text chunks 30 ms apart carrying 8 tokens by the usage chunk: 2 tokens per chunk,
        // so each of the 3 gaps (~30 ms) counts as 2 tokens of ~15 ms.
        let report = try await run([.chatStream(chunks: 4, tokens: 8, gapMs: 30, usage: true)], mode: .closed(concurrency: 1),
                                   requests: 3, stream: true, api: .openai)
        XCTAssertEqual(report.ok, 3, "\(report.errorSamples)")
        XCTAssertEqual(report.tokens.completion, 24)
        let ttft = try XCTUnwrap(report.ttfsMs)
        XCTAssertEqual(ttft.count, 3)
        XCTAssertGreaterThanOrEqual(ttft.p50, 25)
        XCTAssertLessThan(ttft.p50, report.latencyMs.p50)
        let perToken = try XCTUnwrap(report.perTokenMs)
        XCTAssertEqual(perToken.count, 3 * 3 * 2)
        XCTAssertGreaterThan(perToken.p50, 8)
        XCTAssertLessThan(perToken.p50, 30)
        let body = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try XCTUnwrap(fake).requestBodies[0].utf8)) as? [String: Any])
        XCTAssertEqual((body["stream_options"] as? [String: Bool])?["include_usage"], true)
    }

    func testOpenAIStreamWithoutUsageCountsOneTokenPerChunk() async throws {
        let report = try await run([.chatStream(chunks: 5, tokens: 0, gapMs: 5, usage: false)], mode: .closed(concurrency: 1),
                                   requests: 2, stream: true, api: .openai)
        XCTAssertEqual(report.ok, 2, "\(report.errorSamples)")
        XCTAssertEqual(report.tokens.completion, 10)
    }

    func testOpenAIErrorObjectInAStreamIsAStreamError() async throws {
        let report = try await run([.chatStreamThenError], mode: .closed(concurrency: 1), requests: 2, stream: true, api: .openai)
        XCTAssertEqual(report.errorsByClass["stream_error"], 2)
        XCTAssertEqual(report.errorCodes["stream_error/server_error"], 2, "a null code falls back to the type")
    }

    func testOpenAINeedsAModelWhenTheServerListsNone() async throws {
        // A native fake's 404 for /v1/models would do too; here nothing listens at all.
        let fake = try FakeGateway([.chat])
        let url = fake.url
        fake.shutdown()
        var plan = LoadPlan(target: url, mode: .closed(concurrency: 1))
        plan.api = .openai
        plan.maxRequests = 1
        do {
            _ = try await LoadRunner(plan: plan, workload: workload).run()
            XCTFail("ran without a model")
        } catch let error as LoadGenError {
            XCTAssertTrue("\(error)".contains("--model"), "\(error)")
        }
        plan.ignoreEOS = true
        plan.api = .native
        XCTAssertThrowsError(try plan.validate(), "--ignore-eos is an OpenAI field")
    }
}
