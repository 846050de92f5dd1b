import Foundation
import Wire
import XCTest

/// Seeded sampling across retries: a span is sampled from the request's seed and its place in
/// the answer (`answer_tokens_before`), so when the replica running it dies, another replica
/// draws the same random numbers. The tokens are the same as long as the logits are: the retry
/// recomputes the answer so far in one prefill, where the first replica had fed it span by span,
/// and the two differ in floating-point rounding; a draw that falls within that difference of
/// the boundary between two tokens picks the other one. Measured here: most answers identical
/// (a fault-free run against a faulted one), none failed. Bit-identical retries need prefill and
/// incremental steps that round alike (open in issue 20).
extension FaultTests {
    func testSeededSampledAnswersSurviveAReplicaDyingMidAnswer() async throws {
        let harness = try ClusterHarness()
        defer { harness.stopAll() }
        let client = try await harness.startCluster(gate: "alternate", spanTokens: 4,
                                                    emamba: ["emamba-1", "emamba-2"], et5: ["et5-1", "et5-2"])
        defer { client.shutdown() }
        func request(_ i: Int, _ run: String) -> AnswerRequest {
            var r = question("\(run)-\(i)", ["What is gingivitis?", "What is a molar?", "What is insulin?"][i % 3], maxTokens: 48)
            r.sampling = Sampling(temperature: 1.3, topP: 0.95, seed: UInt64(1000 + i))
            return r
        }
        func answers(_ run: String, during fault: (@Sendable () -> Void)? = nil) async throws -> [Int: CollectedAnswer] {
            try await withThrowingTaskGroup(of: (Int, CollectedAnswer).self) { group in
                for i in 0..<12 { group.addTask { (i, try await client.collect(request(i, run))) } }
                if let fault {
                    try await Task.sleep(nanoseconds: 150_000_000)   // every answer is mid-way
                    fault()
                }
                var all: [Int: CollectedAnswer] = [:]
                for try await (i, answer) in group { all[i] = answer }
                return all
            }
        }
        let clean = try await answers("clean")
        for (i, a) in clean { XCTAssertNil(a.error, "fault-free answer \(i): \(String(describing: a.error))") }
        // Sampling is on: different seeds give different answers.
        XCTAssertGreaterThan(Set(clean.values.map(\.text)).count, 3, "\(clean.values.map(\.text))")

        let faulted = try await answers("faulted") { harness.signal("emamba-1", SIGKILL) }
        XCTAssertNotNil(harness.waitForExit("emamba-1"))
        let retried = faulted.values.map { Int($0.done?.retries ?? 0) }.reduce(0, +)
        XCTAssertGreaterThan(retried, 0, "no span was running on the killed replica: the test proved nothing")
        for i in 0..<12 {
            XCTAssertNil(faulted[i]?.error, "answer \(i) failed: \(String(describing: faulted[i]?.error))\n\(harness.allLogs())")
        }
        let identical = (0..<12).filter { faulted[$0]?.text == clean[$0]?.text }.count
        // Answers whose spans were never retried are identical by construction; a retried span
        // is identical unless a draw fell within the prefill's rounding of a token boundary.
        XCTAssertGreaterThanOrEqual(identical, 9, "seeded answers diverged far more than rounding explains")
        print("RELIABILITY seeded-sampling: 12 sampled answers (temperature 1.3, top_p 0.95, 48 tokens, seeds 1000-1011) "
              + "with an EMamba replica SIGKILLed mid-answer: \(retried) spans retried elsewhere, none failed, "
              + "\(identical)/12 identical to the fault-free run")
    }
}
