import XCTest
import Foundation
@testable import Engine

/// Bad checkpoints and bad calls give typed errors that name the problem; nothing crashes.
final class MambaBadInputTests: XCTestCase {
    var dir: URL!
    let shape = RandomMambaCheckpoint.Shape(vocabSize: 50, hiddenSize: 16, stateSize: 4, layers: 2)

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("mamba-bad-\(UUID().uuidString)")
        try RandomMambaCheckpoint.write(shape, to: dir, seed: 3)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func editConfig(_ edit: (inout [String: Any]) -> Void) throws {
        let url = dir.appendingPathComponent("config.json")
        var c = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        edit(&c)
        try JSONSerialization.data(withJSONObject: c).write(to: url)
    }

    func loadError(file: StaticString = #filePath, line: UInt = #line) -> EngineError? {
        do { _ = try loadExpertModel(from: dir); XCTFail("loaded a bad checkpoint", file: file, line: line); return nil }
        catch let e as EngineError { return e }
        catch { XCTFail("not an EngineError: \(error)", file: file, line: line); return nil }
    }

    func testMissingTensorIsNamed() throws {
        try editConfig { $0["num_hidden_layers"] = 3 }
        XCTAssertEqual(loadError(), .missingTensor(path: dir.appendingPathComponent("model.safetensors").path, name: "backbone.layers.2.norm.weight"))
        try editConfig { $0["num_hidden_layers"] = 2; $0["use_bias"] = true }
        guard case .missingTensor(_, "backbone.layers.0.mixer.in_proj.bias") = loadError() else { return XCTFail() }
        try editConfig { $0["use_bias"] = false; $0["tie_word_embeddings"] = false }
        guard case .missingTensor(_, "lm_head.weight") = loadError() else { return XCTFail() }
    }

    func testWrongShapeIsNamedWithBothShapes() throws {
        try editConfig { $0["vocab_size"] = 60 }
        XCTAssertEqual(loadError(), .shapeMismatch(path: dir.appendingPathComponent("model.safetensors").path,
                                                   name: "backbone.embeddings.weight", expected: [60, 16], actual: [50, 16]))
        try editConfig { $0["vocab_size"] = 50; $0["state_size"] = 8 }
        guard case .shapeMismatch(_, "backbone.layers.0.mixer.x_proj.weight", _, _) = loadError() else { return XCTFail() }
        try editConfig { $0["state_size"] = 4; $0["time_step_rank"] = 3 }
        guard case .shapeMismatch(_, "backbone.layers.0.mixer.x_proj.weight", [11, 32], [9, 32]) = loadError() else { return XCTFail() }
    }

    func testUnknownDtypeIsRefused() throws {
        let header = #"{"backbone.embeddings.weight":{"dtype":"Q4_0","shape":[2],"data_offsets":[0,2]}}"#
        var bytes = Data()
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(Data(header.utf8)); bytes.append(contentsOf: [0, 0])
        try bytes.write(to: dir.appendingPathComponent("model.safetensors"))
        guard case .unsupportedDtype(_, "backbone.embeddings.weight", "Q4_0") = loadError() else { return XCTFail() }
    }

    func testTruncatedWeightsFile() throws {
        let url = dir.appendingPathComponent("model.safetensors")
        let data = try Data(contentsOf: url)
        try data.prefix(data.count - 100).write(to: url)
        guard case .corruptFile(_, let reason) = loadError() else { return XCTFail() }
        XCTAssertTrue(reason.contains("truncated"), reason)
    }

    func testUnsupportedConfigSettingsAreRefused() throws {
        try editConfig { $0["hidden_act"] = "gelu" }
        guard case .unsupported(let what) = loadError() else { return XCTFail() }
        XCTAssertTrue(what.contains("gelu"))
        try editConfig { $0["hidden_act"] = "silu"; $0["time_step_rank"] = "fast" }
        guard case .invalidConfig(_, "time_step_rank", _) = loadError() else { return XCTFail() }
        try editConfig { $0["time_step_rank"] = "auto"; $0["intermediate_size"] = 40 }
        guard case .invalidConfig(_, "intermediate_size", _) = loadError() else { return XCTFail() }
        try editConfig { $0["intermediate_size"] = 32; $0["hidden_size"] = "big" }
        guard case .invalidConfig(_, "hidden_size", _) = loadError() else { return XCTFail() }
        try editConfig { $0["hidden_size"] = 16; $0["model_type"] = "mamba2" }
        guard case .unsupported(let t) = loadError() else { return XCTFail() }
        XCTAssertTrue(t.contains("mamba2"))
        try editConfig { $0.removeValue(forKey: "model_type") }
        guard case .invalidConfig(_, "model_type", _) = loadError() else { return XCTFail() }
        try Data("not json".utf8).write(to: dir.appendingPathComponent("config.json"))
        guard case .invalidConfig = loadError() else { return XCTFail() }
        try FileManager.default.removeItem(at: dir.appendingPathComponent("config.json"))
        guard case .io = loadError() else { return XCTFail() }
    }

    func testMissingWeightsFile() throws {
        try FileManager.default.removeItem(at: dir.appendingPathComponent("model.safetensors"))
        guard case .io(_, let reason) = loadError() else { return XCTFail() }
        XCTAssertTrue(reason.contains("model.safetensors"))
    }

    func testBadCallsAreTypedErrors() throws {
        let model = try loadExpertModel(from: dir)
        let s = try model.makeSession(encoderInput: nil)
        XCTAssertThrowsError(try model.feed(s, tokens: [3, 50])) { XCTAssertEqual($0 as? EngineError, .tokenOutOfRange(token: 50, vocabSize: 50)) }
        XCTAssertThrowsError(try model.feed(s, tokens: [-1])) { XCTAssertEqual($0 as? EngineError, .tokenOutOfRange(token: -1, vocabSize: 50)) }
        XCTAssertThrowsError(try model.feed(s, tokens: [])) { guard case .emptyInput = $0 as? EngineError else { return XCTFail() } }
        XCTAssertThrowsError(try model.feedAll(s, tokens: [])) { guard case .emptyInput = $0 as? EngineError else { return XCTFail() } }
        XCTAssertEqual(s.consumed, [])        // nothing was consumed by the failed calls
        XCTAssertThrowsError(try model.step([s], tokens: [1_000_000])) { XCTAssertEqual($0 as? EngineError, .tokenOutOfRange(token: 1_000_000, vocabSize: 50)) }
        XCTAssertThrowsError(try model.step([s], tokens: [1, 2])) { guard case .invalidArgument = $0 as? EngineError else { return XCTFail() } }
        XCTAssertThrowsError(try model.step([s, s], tokens: [1, 2])) { guard case .invalidArgument = $0 as? EngineError else { return XCTFail() } }
        XCTAssertThrowsError(try model.makeSession(encoderInput: [1])) { guard case .invalidArgument = $0 as? EngineError else { return XCTFail() } }
        let other = try loadExpertModel(from: dir)
        XCTAssertThrowsError(try other.feed(s, tokens: [1])) { guard case .invalidArgument = $0 as? EngineError else { return XCTFail() } }
        XCTAssertEqual(try model.step([], tokens: []), [])
        XCTAssertThrowsError(try generateGreedy(model: model, encoderInput: nil, prefix: [], maxNewTokens: 3, ignoreEOS: false)) {
            guard case .emptyInput = $0 as? EngineError else { return XCTFail() }
        }
        XCTAssertEqual(try model.feed(s, tokens: [49]).count, 50)   // the last valid id works
    }
}
