import Foundation
import XCTest
@testable import Tokenizers

/// Invalid UTF-8, unknown ids, malformed or unsupported tokenizer.json: typed errors, no crash.
final class BadInputTests: XCTestCase {
    func fixture(_ name: String) throws -> Tokenizer {
        try Tokenizer.load(from: try FixtureParityTests.fixtureURL(name))
    }

    func testInvalidUTF8IsRejectedWithOffset() throws {
        let tok = try fixture("neox_bpe")
        let cases: [([UInt8], Int)] = [
            ([0xFF], 0), (Array("ab".utf8) + [0xC3], 2), (Array("ok ".utf8) + [0xC0, 0xAF], 3),  // truncated, overlong
            ([0xED, 0xA0, 0x80], 0),  // surrogate
            ([0xF4, 0x90, 0x80, 0x80], 0),  // above U+10FFFF
            (Array("é".utf8) + [0x80], 2),  // lone continuation
        ]
        for (bytes, offset) in cases {
            XCTAssertThrowsError(try tok.encode(bytes: bytes)) { e in
                XCTAssertEqual(e as? TokenizerError, .invalidUTF8(offset: offset), "\(bytes)")
            }
        }
        let ok = try tok.encode(bytes: Array("café 😀".utf8))
        XCTAssertEqual(ok, try tok.encode("café 😀"))
    }

    func testUnknownIdsOnDecode() throws {
        let tok = try fixture("t5_unigram")
        for bad in [-1, tok.vocabSize, 1 << 40] {
            XCTAssertThrowsError(try tok.decode([3, bad])) { e in
                XCTAssertEqual(e as? TokenizerError, .unknownId(id: bad, vocabSize: tok.vocabSize))
                XCTAssertTrue("\(e)".contains("\(bad)"))
            }
            var sd = tok.makeStreamDecoder()
            XCTAssertThrowsError(try sd.push(bad))
        }
        XCTAssertNil(tok.token(forId: -5))
        XCTAssertEqual(tok.id(forToken: "</s>"), 1)
        XCTAssertEqual(tok.token(forId: 1), "</s>")
    }

    func parse(_ json: String) -> TokenizerError? {
        do { _ = try Tokenizer(json: Data(json.utf8), file: "t.json"); return nil } catch { return error as? TokenizerError }
    }

    static let minimalUnigram = #"{"model": {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0], ["a", -1.0]]}}"#

    func testMalformedJSON() {
        guard case .malformed(let f, _)? = parse("{not json") else { return XCTFail("expected malformed") }
        XCTAssertEqual(f, "t.json")
        guard case .malformed? = parse("[1, 2]") else { return XCTFail("expected malformed for array") }
        guard case .malformed(_, let d)? = parse(#"{"model": {"type": "Unigram", "vocab": [["a"]]}}"#) else { return XCTFail() }
        XCTAssertTrue(d.contains("vocab[0]"), d)
        guard case .malformed(_, let d2)? = parse(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}"#) else { return XCTFail() }
        XCTAssertTrue(d2.contains("merges[0]"), d2)
        guard case .malformed? = parse(#"{"model": {"type": "Unigram", "unk_id": 9, "vocab": [["a", -1.0]]}}"#) else { return XCTFail("unk_id out of range") }
        guard case .malformed? = parse(#"{"model": {"type": "Unigram", "vocab": [["a", -1.0]]}, "normalizer": {"type": "Precompiled", "precompiled_charsmap": "AAAA"}}"#) else {
            return XCTFail("truncated charsmap")
        }
        XCTAssertThrowsError(try Tokenizer.load(from: URL(fileURLWithPath: "/nonexistent/x"))) { e in
            XCTAssertEqual(e as? TokenizerError, .fileNotFound(path: "/nonexistent/x"))
        }
        XCTAssertNil(parse(Self.minimalUnigram))
    }

    func testUnsupportedComponentsAreRefusedByName() {
        let base = String(Self.minimalUnigram.dropLast())
        let cases: [(String, String, String)] = [
            (#", "normalizer": {"type": "BertNormalizer"}}"#, "normalizer", "BertNormalizer"),
            (#", "pre_tokenizer": {"type": "BertPreTokenizer"}}"#, "pre_tokenizer", "BertPreTokenizer"),
            (#", "decoder": {"type": "WordPiece"}}"#, "decoder", "WordPiece"),
            (#", "post_processor": {"type": "Mystery"}}"#, "post_processor", "Mystery"),
        ]
        for (suffix, section, type) in cases {
            guard case .unsupportedComponent(let s, let t, _)? = parse(base + suffix) else { XCTFail(suffix); continue }
            XCTAssertEqual(s, section); XCTAssertEqual(t, type)
        }
        guard case .unsupportedComponent("model", "WordPiece", _)? = parse(#"{"model": {"type": "WordPiece", "vocab": {}}}"#) else { return XCTFail() }
        guard case .unsupportedOption(_, "padding", _)? = parse(base + #", "padding": {"strategy": "BatchLongest"}}"#) else { return XCTFail() }
        guard case .unsupportedOption(_, "dropout", _)? = parse(#"{"model": {"type": "BPE", "dropout": 0.1, "vocab": {}, "merges": []}}"#) else { return XCTFail() }
    }

    func testErrorsReadWell() {
        XCTAssertEqual("\(TokenizerError.unknownId(id: 7, vocabSize: 5))", "tokenizer: id 7 is not in the vocabulary (valid ids are 0..<5)")
        XCTAssertTrue("\(TokenizerError.unsupportedComponent(section: "decoder", type: "CTC", hint: "x"))".contains("decoder type \"CTC\""))
    }

    func testConcurrentEncodingIsConsistent() throws {
        let tok = try fixture("neox_bpe")
        let texts = (0..<64).map { "Patient \($0) has hypertension and diabetes mellitus, café \($0 * 7)." }
        let expected = try texts.map { try tok.encode($0).ids }
        var got = [[Int]](repeating: [], count: texts.count)
        let lock = NSLock()
        DispatchQueue.concurrentPerform(iterations: texts.count) { i in
            let ids = (try? tok.encode(texts[i]).ids) ?? []
            lock.lock(); got[i] = ids; lock.unlock()
        }
        XCTAssertEqual(got, expected)
    }
}

