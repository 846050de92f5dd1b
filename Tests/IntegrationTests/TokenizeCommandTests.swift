import Foundation
import TestCommon
import XCTest

/// `mambaformer tokenize --jsonl`, the tool parity checks run through (compare_cli.py): no
/// character of a JSON string may be dropped or altered on the way in.
final class TokenizeCommandTests: XCTestCase {
    func testJSONLinesKeepEveryCharacter() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tok-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("in.jsonl")
        // A raw U+FEFF opening a string value (Foundation's JSONSerialization drops it), one
        // inside, and an escaped one.
        let lines = ["{\"text\": \"\u{FEFF}ab\"}", "{\"text\": \"a\u{FEFF}b\", \"add_special_tokens\": false}",
                     "{\"text\": \"\\ufeffab\"}", "{\"text\": 5}", "[1]", "{\"ids\": [66, true]}"]
        try (lines.joined(separator: "\n") + "\n").write(to: input, atomically: true, encoding: .utf8)
        let tokenizer = TestPaths.repositoryRoot.appendingPathComponent("Tests/TokenizersTests/Fixtures/neox_bpe").path
        let run = try runCommand("/bin/sh", ["-c", "\"$0\" tokenize --tokenizer \"$1\" --jsonl < \"$2\"",
                                             TestPaths.binary.path, tokenizer, input.path])
        XCTAssertEqual(run.status, 0, run.err)
        let out = run.out.split(separator: "\n").map(String.init)
        // Hugging Face tokenizers 0.23.3 on the same tokenizer.json: U+FEFF is three byte-level tokens.
        XCTAssertEqual(out.count, 6)
        XCTAssertTrue(out[0].hasPrefix("{\"ids\": [173, 121, 125, 66, 67]"), out[0])
        XCTAssertTrue(out[1].hasPrefix("{\"ids\": [66, 173, 121, 125, 67]"), out[1])
        XCTAssertTrue(out[2].hasPrefix("{\"ids\": [173, 121, 125, 66, 67]"), out[2])
        XCTAssertEqual(out[3], "{\"error\": \"\\\"text\\\" must be a string\"}")
        XCTAssertEqual(out[4], "{\"error\": \"line is not a JSON object\"}")
        XCTAssertEqual(out[5], "{\"error\": \"\\\"ids\\\" must be an array of integers\"}")
    }
}
