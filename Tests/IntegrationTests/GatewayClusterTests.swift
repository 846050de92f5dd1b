import Foundation
import GatewayClient
import XCTest

/// The whole spine through real processes: curl → gateway → router → experts.
final class GatewayClusterTests: XCTestCase {
    var cluster: ClusterHarness!
    var port = 0
    var base: String { "http://127.0.0.1:\(port)" }

    override func setUpWithError() throws {
        cluster = try ClusterHarness()
        try cluster.startRouter(gate: "rule", spanTokens: 4)
        try cluster.startExpert("emamba", id: "emamba-1")
        try cluster.startExpert("et5", id: "et5-1")
        port = ClusterHarness.freePort()
        try cluster.start("gateway", ["gateway", "--listen", "127.0.0.1:\(port)", "--router", cluster.frontend,
                                      "--max-concurrent", "3", "--max-tokens", "1000"])
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if (try? curl(["-o", "/dev/null", "-w", "%{http_code}", "\(base)/readyz"]))?.out == "200" { return }
            Thread.sleep(forTimeInterval: 0.1)
        }
        XCTFail("gateway not ready\n\(cluster.allLogs())")
    }

    override func tearDown() { cluster.stopAll() }

    struct CurlResult { var out: String; var status: Int32 }

    @discardableResult
    func curl(_ args: [String], input: String? = nil) throws -> CurlResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        p.arguments = ["-s", "--max-time", "60"] + args
        let out = Pipe()
        p.standardOutput = out
        if let input {
            let inPipe = Pipe()
            p.standardInput = inPipe
            try p.run()
            inPipe.fileHandleForWriting.write(Data(input.utf8))
            try inPipe.fileHandleForWriting.close()
        } else {
            try p.run()
        }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return CurlResult(out: String(decoding: data, as: UTF8.self), status: p.terminationStatus)
    }

    func post(_ path: String, _ body: String, headers: [String] = []) throws -> (code: Int, body: String) {
        let r = try curl(["-X", "POST", "\(base)\(path)", "-H", "content-type: application/json", "--data-binary", "@-",
                          "-w", "\n%{http_code}"] + headers.flatMap { ["-H", $0] }, input: body)
        let lines = r.out.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    func json(_ text: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
    }

    func testAnswerJSONHasTheRoutingTrace() throws {
        let (code, body) = try post("/v1/answer", #"{"question": "What is gingivitis?", "max_tokens": 12}"#)
        XCTAssertEqual(code, 200, body)
        let object = json(body)
        XCTAssertEqual(object["finish_reason"] as? String, "length")
        let usage = object["usage"] as? [String: Any]
        XCTAssertEqual(usage?["completion_tokens"] as? Int, 12)
        let trace = object["trace"] as? [[String: Any]] ?? []
        XCTAssertEqual(trace.count, 3, "12 tokens in spans of 4")
        XCTAssertEqual(trace.compactMap { $0["tokens"] as? Int }.reduce(0, +), 12)
        XCTAssertFalse((object["answer"] as? String ?? "").isEmpty)
    }

    func testStreamingDeliversSpanEventsThenDone() throws {
        let r = try curl(["-N", "-X", "POST", "\(base)/v1/answer", "-H", "content-type: application/json",
                          "--data", #"{"question": "What is a molar?", "max_tokens": 12, "stream": true}"#])
        let spans = r.out.components(separatedBy: "event: span").count - 1
        XCTAssertEqual(spans, 3, r.out)
        XCTAssertTrue(r.out.contains("event: done"), r.out)
    }

    func testChatCompletionsLikeOpenAIClientsUseIt() throws {
        let (code, body) = try post("/v1/chat/completions",
            #"{"model": "mambaformer", "messages": [{"role": "user", "content": "What is gingivitis?"}], "max_tokens": 8}"#)
        XCTAssertEqual(code, 200, body)
        let choices = json(body)["choices"] as? [[String: Any]]
        let message = choices?.first?["message"] as? [String: Any]
        XCTAssertEqual(message?["role"] as? String, "assistant")
        XCTAssertNotNil(message?["content"] as? String)

        let stream = try curl(["-N", "-X", "POST", "\(base)/v1/chat/completions", "-H", "content-type: application/json", "--data",
            #"{"model": "m", "messages": [{"role": "user", "content": "What is a fever?"}], "max_tokens": 8, "stream": true}"#])
        XCTAssertTrue(stream.out.contains("chat.completion.chunk"), stream.out)
        XCTAssertTrue(stream.out.trimmingCharacters(in: .whitespacesAndNewlines).hasSuffix("data: [DONE]"), stream.out)
    }

    func testProbesAndMetrics() throws {
        XCTAssertEqual(try curl(["-o", "/dev/null", "-w", "%{http_code}", "\(base)/healthz"]).out, "200")
        let ready = json(try curl(["\(base)/readyz"]).out)
        XCTAssertEqual((ready["replicas"] as? [String: Any])?["emamba"] as? Int, 1)
        _ = try post("/v1/answer", #"{"question": "What is gingivitis?", "max_tokens": 4}"#)
        let metrics = try curl(["\(base)/metrics"]).out
        XCTAssertTrue(metrics.contains("# TYPE"), metrics)
    }

    func testErrorsAreJSONWithTheRightStatus() throws {
        XCTAssertEqual(try post("/v1/answer", "{not json").code, 400)
        XCTAssertEqual(try post("/v1/answer", #"{"question": ""}"#).code, 422)
        XCTAssertEqual(try post("/v1/answer", #"{"question": "q", "max_tokens": 100000}"#).code, 422)
        XCTAssertEqual(try post("/v1/answer", "{\"question\": \"" + String(repeating: "a", count: 300_000) + "\"}").code, 413)
        let (code, body) = try post("/v1/answer", #"{"question": 5}"#)
        XCTAssertTrue([400, 422].contains(code), "\(code)")
        XCTAssertNotNil(json(body)["error"], body)
        // Still serving.
        XCTAssertEqual(try post("/v1/answer", #"{"question": "What is gingivitis?", "max_tokens": 4}"#).code, 200)
    }

    func testBurstBeyondTheConcurrencyLimitGets429() throws {
        // Ten clients at once (real threads: a dispatch pool would run only one per core).
        let lock = NSLock()
        var all: [Int] = []
        let group = DispatchGroup()
        for _ in 0..<10 {
            group.enter()
            Thread.detachNewThread {
                let c = (try? self.post("/v1/answer", #"{"question": "What is gingivitis?", "max_tokens": 200}"#).code) ?? 0
                lock.lock(); all.append(c); lock.unlock()
                group.leave()
            }
        }
        group.wait()
        XCTAssertTrue(all.contains(429), "\(all)")
        XCTAssertTrue(all.contains(200), "\(all)")
        XCTAssertTrue(all.allSatisfy { $0 == 200 || $0 == 429 }, "\(all)")
    }

    func testClientDisconnectCancelsTheWorkOnTheExperts() throws {
        // A long answer (1000 tokens, several seconds); the client hangs up after 0.3 s.
        // The expert logs "span cancelled" when the cancel stops a span it is running; a
        // hang-up that falls between two spans cancels nothing there. Spans here are 4 tokens,
        // a few ms with the faster kernels, about as long as the cancel's trip through the
        // router, so try up to 10 times.
        for attempt in 1...10 {
            let id = "hang-up-\(attempt)"
            let r = try curl(["-N", "--max-time", "0.3", "-X", "POST", "\(base)/v1/answer", "-H", "content-type: application/json",
                              "-H", "X-Request-Id: \(id)",
                              "--data", #"{"question": "What is gingivitis?", "max_tokens": 1000, "stream": true}"#])
            XCTAssertNotEqual(r.status, 0, "curl should have timed out")
            let deadline = Date().addingTimeInterval(2)
            while Date() < deadline {
                let logs = cluster.log("emamba-1") + cluster.log("et5-1")
                if logs.split(separator: "\n").contains(where: { $0.contains("span cancelled") && $0.contains("request_id=\(id)") }) { return }
                Thread.sleep(forTimeInterval: 0.1)
            }
        }
        XCTFail("no expert was told to cancel\n\(cluster.allLogs())")
    }
}

/// `logprobs` through the real cluster: the experts compute each token's log-probability and
/// their own most likely alternatives. Greedy decoding picks the most likely token, so each
/// token's log-probability is its first alternative's, and alternatives come most likely first.
final class LogprobsClusterTests: XCTestCase {
    func testExpertsReturnLogprobsAndAlternatives() throws {
        let harness = try ClusterHarness()
        defer { harness.stopAll() }
        let port = try harness.startSmallCluster()
        let ask = RawHTTP.request("POST", "/v1/answer", headers: ["Content-Type: application/json"],
                                  body: Array(#"{"question":"What is gingivitis?","max_tokens":12,"logprobs":true,"top_logprobs":3}"#.utf8))
        let reply = try RawHTTP.exchange(port: port, ask)
        XCTAssertEqual(reply.status, 200, reply.summary)
        let answer = try JSONDecoder().decode(AnswerResponse.self, from: Data(reply.body.utf8))
        let entries = try XCTUnwrap(answer.logprobs)
        XCTAssertEqual(entries.count, answer.usage.completionTokens)
        XCTAssertEqual(Set(entries.map(\.expert)), ["emamba", "et5"], "the alternating gate: both experts' tokens")
        for entry in entries {
            XCTAssertEqual(entry.topLogprobs.count, 3)
            XCTAssertLessThanOrEqual(entry.logprob, 0)
            XCTAssertEqual(entry.logprob, entry.topLogprobs[0].logprob, accuracy: 1e-5, "greedy: the chosen token is the most likely")
            XCTAssertTrue(zip(entry.topLogprobs, entry.topLogprobs.dropFirst()).allSatisfy { $0.logprob >= $1.logprob })
        }
        XCTAssertEqual(entries.map(\.token).joined(), answer.answer)
    }
}
