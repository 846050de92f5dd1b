import Foundation
import Wire
import XCTest

/// Garbage and broken inputs at process level (issue #12): refused or dropped, never a crash.
final class ProcessBadInputTests: XCTestCase {
    /// An expert whose "router" sends it random and mutated frames keeps serving, and the
    /// garbage never reaches the model.
    func testExpertDropsGarbageFramesAndKeepsServing() throws {
        let harness = try ClusterHarness()
        defer { harness.stopAll() }
        let context = try ZmqContext()
        defer { context.terminate() }
        let fakeRouter = try ZmqSocket(context: context, type: .router)
        defer { fakeRouter.close() }
        _ = try fakeRouter.bind(harness.backend)
        try harness.startExpert("emamba", id: "emamba-1", extra: ["--metrics", "127.0.0.1:0"])

        // The expert announces itself: learn its identity.
        var identity: [UInt8]?
        let deadline = Date().addingTimeInterval(60)
        while identity == nil, Date() < deadline {
            guard try ZmqPoll.poll([fakeRouter], timeoutMs: 100)[0], let message = try fakeRouter.receiveEnvelope() else { continue }
            if case .success(let e) = message.result, case .ready = e.body { identity = message.identity }
        }
        let expert = try XCTUnwrap(identity, "the expert never sent Ready\n\(harness.allLogs())")

        var generator = SystemRandomNumberGenerator()
        let valid = Envelope(.spanRequest(SpanRequest(requestId: "g-1", spanIndex: 0, prompt: "question: What is a molar?",
                                                      answerSoFar: "", maxNewTokens: 4))).encoded()
        for i in 0..<300 {
            var frame: [UInt8]
            switch i % 3 {
            case 0: frame = (0..<Int.random(in: 0...400, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            case 1:  // a valid request with one byte flipped or cut short
                frame = valid
                if i % 2 == 0 { frame[Int.random(in: 0..<frame.count, using: &generator)] ^= 0xFF } else { frame = Array(frame.prefix(frame.count / 2)) }
            default: frame = Envelope(.heartbeat(Heartbeat()), version: 99_000).encoded()  // a future major version
            }
            _ = try fakeRouter.send(i % 7 == 0 ? [expert, frame, frame] : [expert, frame], dontWait: false)
        }
        XCTAssertTrue(try fakeRouter.send(Envelope(.spanRequest(SpanRequest(
            requestId: "after-garbage", spanIndex: 0, prompt: "question: What is a molar?", answerSoFar: "", maxNewTokens: 4))),
            to: expert))

        var answered: SpanResult?
        let answerDeadline = Date().addingTimeInterval(60)
        while answered == nil, Date() < answerDeadline {
            guard try ZmqPoll.poll([fakeRouter], timeoutMs: 100)[0], let message = try fakeRouter.receiveEnvelope(),
                  case .success(let e) = message.result, case .spanResult(let r) = e.body, r.requestId == "after-garbage" else { continue }
            answered = r
        }
        XCTAssertEqual(answered?.pieces.count, 4, "the expert stopped serving after garbage\n\(harness.log("emamba-1"))")
        XCTAssertNil(harness.waitForExit("emamba-1", timeout: 0.1), "the expert died")
        // Every undecodable frame is counted (the valid-but-future-version ones are refused, not dropped).
        let metrics = try harness.scrapeMetrics("emamba-1")
        let dropped = metrics.split(separator: "\n").first { $0.hasPrefix("mambaformer_expert_frames_dropped_total") }
            .flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
        XCTAssertGreaterThanOrEqual(dropped, 100, "the expert's dropped-frame counter:\n\(metrics)")
        print("RELIABILITY expert-garbage: 300 garbage frames, \(Int(dropped)) counted as dropped, next span served")
    }

    /// Broken checkpoints and bad values are refused at start: a clear message, exit non-zero.
    func testBrokenCheckpointsAndConfigAreRefusedAtStart() throws {
        let harness = try ClusterHarness()
        defer { harness.stopAll() }
        let fm = FileManager.default
        let source = ClusterHarness.demoCheckpoint.appendingPathComponent("emamba")

        // A copy of the EMamba folder whose weights file is cut in half.
        let truncated = harness.dir.appendingPathComponent("truncated")
        try fm.createDirectory(at: truncated, withIntermediateDirectories: true)
        for file in ["config.json", "tokenizer.json"] {
            try fm.copyItem(at: source.appendingPathComponent(file), to: truncated.appendingPathComponent(file))
        }
        let weights = try Data(contentsOf: source.appendingPathComponent("model.safetensors"))
        try weights.prefix(weights.count / 2).write(to: truncated.appendingPathComponent("model.safetensors"))

        // A folder without weights, and one whose config says another shape.
        let missing = harness.dir.appendingPathComponent("missing")
        try fm.createDirectory(at: missing, withIntermediateDirectories: true)
        try fm.copyItem(at: source.appendingPathComponent("config.json"), to: missing.appendingPathComponent("config.json"))
        let reshaped = harness.dir.appendingPathComponent("reshaped")
        try fm.copyItem(at: source, to: reshaped)
        var config = try String(contentsOf: reshaped.appendingPathComponent("config.json"), encoding: .utf8)
        config = config.replacingOccurrences(of: #""hidden_size": 256"#, with: #""hidden_size": 320"#)
        try config.write(to: reshaped.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)

        let cases: [(String, [String], String)] = [
            ("truncated", ["expert", "--kind", "emamba", "--model", truncated.path], "safetensors"),
            ("missing", ["expert", "--kind", "emamba", "--model", missing.path], "model.safetensors"),
            ("reshaped", ["expert", "--kind", "emamba", "--model", reshaped.path], "shape"),
            ("threads", ["expert", "--kind", "emamba", "--threads", "0"], "--threads"),
            ("kind", ["expert", "--kind", "gpt"], "--kind"),
            ("gate", ["router", "--gate", "coin-flip"], "--gate"),
        ]
        for (name, arguments, expected) in cases {
            try harness.start(name, arguments + (arguments[0] == "expert" ? ["--router", harness.backend] : []))
            let status = harness.waitForExit(name, timeout: 60)
            XCTAssertNotNil(status, "\(name): still running")
            XCTAssertNotEqual(status, 0, "\(name): exit status")
            XCTAssertTrue(harness.log(name).localizedCaseInsensitiveContains(expected),
                          "\(name): the message should mention '\(expected)':\n\(harness.log(name))")
        }
    }
}
