import Engine
import Foundation
import Wire
import XCTest

/// A checkpoint with a trained gate: `mambaformer gate train` writes gate/, and a router
/// started with the default `--gate auto` runs it (the trace says "trained").
final class GateClusterTests: XCTestCase {
    func testRouterRunsTheCheckpointsTrainedGate() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("mf-gate-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        try #"{"format": 1, "emamba": "emamba", "et5": "et5", "gate": "gate"}"#.write(
            to: root.appendingPathComponent("mambaformer.json"), atomically: true, encoding: .utf8)
        for expert in ["emamba", "et5"] {
            try FileManager.default.createSymbolicLink(at: root.appendingPathComponent(expert),
                                                       withDestinationURL: ClusterHarness.demoCheckpoint.appendingPathComponent(expert))
        }

        let train = Process()
        train.executableURL = ClusterHarness.binary
        train.arguments = ["gate", "train", "--checkpoint", root.path,
                           "--data", ClusterHarness.repositoryRoot.appendingPathComponent("data/train.jsonl").path,
                           "--limit", "16", "--epochs", "2"]
        let output = Pipe()
        train.standardOutput = output
        train.standardError = output
        try train.run()
        let log = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        train.waitUntilExit()
        XCTAssertEqual(train.terminationStatus, 0, log)
        XCTAssertTrue(FileManager.default.fileExists(atPath: root.appendingPathComponent("gate/gate.json").path), log)
        XCTAssertTrue(log.contains("cost weight → threshold"), log)

        let cluster = try ClusterHarness(model: root)
        defer { cluster.stopAll() }
        let client = try await cluster.startCluster(gate: "auto", spanTokens: 4, emamba: ["emamba-1"], et5: ["et5-1"])
        defer { client.shutdown() }
        for (weight, pool) in [(Float(0), PoolKind.et5), (1, .emamba)] {
            let request = AnswerRequest(requestId: "gate-\(weight)", question: "What is gingivitis?", maxNewTokens: 12,
                                        policy: Policy(costWeight: weight),
                                        deadlineUnixMs: UInt64(Date().timeIntervalSince1970 * 1000) + 60_000)
            let answer = try await client.collect(request)
            XCTAssertNil(answer.error, "\(answer.error.map { "\($0)" } ?? "")\n\(cluster.allLogs())")
            XCTAssertEqual(answer.done?.gateKind, "trained", cluster.allLogs())
            XCTAssertFalse(answer.spans.isEmpty)
            for span in answer.spans {
                XCTAssertEqual(span.pool, pool, "cost weight \(weight) must route every span to \(pool)")
                XCTAssertTrue((0...1).contains(span.gateScore))
            }
        }
    }
}
