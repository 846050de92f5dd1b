import XCTest
@testable import Tokenizers

final class StreamDecoderTests: XCTestCase {
    /// Byte-level BPE splits an emoji over several tokens: nothing comes out until the last one.
    func testHoldsBackPartialUTF8ByteLevel() throws {
        let tok = try Tokenizer.load(from: try FixtureParityTests.fixtureURL("neox_bpe"))
        let ids = try tok.encode("ok 🧬!", addSpecialTokens: false).ids
        var sd = tok.makeStreamDecoder()
        var chunks: [String] = []
        for id in ids { chunks.append(try sd.push(id)) }
        chunks.append(try sd.flush())
        XCTAssertEqual(chunks.joined(), "ok 🧬!")
        XCTAssertTrue(chunks.contains("🧬") || chunks.contains(" 🧬"), "\(chunks)")
        XCTAssertFalse(chunks.contains { $0.unicodeScalars.contains("\u{FFFD}") }, "\(chunks)")
        XCTAssertGreaterThan(chunks.filter { $0.isEmpty }.count, 1, "partial bytes must be held back: \(chunks)")
    }

    /// Byte fallback (<0xXX> tokens): CJK comes out whole, and only once its bytes are complete.
    func testHoldsBackByteFallbackRuns() throws {
        let tok = try Tokenizer.load(from: try FixtureParityTests.fixtureURL("llama_bpe"))
        let ids = try tok.encode("日本 ok", addSpecialTokens: true).ids
        var sd = tok.makeStreamDecoder()
        var chunks: [String] = []
        for id in ids { chunks.append(try sd.push(id)) }
        chunks.append(try sd.flush())
        XCTAssertEqual(chunks.joined(), try tok.decode(ids))
        XCTAssertFalse(chunks.contains { $0.unicodeScalars.contains("\u{FFFD}") }, "\(chunks)")
    }

    /// Metaspace: word-initial spaces appear with the word; the first word has none.
    func testMetaspaceSpacing() throws {
        let tok = try Tokenizer.load(from: try FixtureParityTests.fixtureURL("spm_t5"))
        let ids = try tok.encode("the patient was treated").ids
        var sd = tok.makeStreamDecoder()
        var out = ""
        for id in ids { out += try sd.push(id) }
        out += try sd.flush()
        XCTAssertEqual(out, "the patient was treated")
        // The decoder is reusable after flush.
        XCTAssertEqual(try sd.flush(), "")
        XCTAssertEqual(try ids.map { try sd.push($0) }.joined() + sd.flush(), "the patient was treated")
    }
}

/// The decoder the experts use: seeded with the ids already read, so the first new token
/// comes out as a full decode of context + answer would show it.
final class StreamDecoderContextTests: XCTestCase {
    func testWithContextTheNewTextIsWhatAFullDecodeAdds() throws {
        for name in ["t5_unigram", "llama_bpe", "neox_bpe"] {
            let tok = try Tokenizer.load(from: try FixtureParityTests.fixtureURL(name))
            let context = try tok.encode("question: what helps? answer:", addSpecialTokens: false).ids
            let answer = try tok.encode(" Rinse twice daily, café — 😀.", addSpecialTokens: false).ids
            var sd = try tok.makeStreamDecoder(context: context)
            XCTAssertTrue(sd.isClean)
            var text = ""
            for id in answer { text += try sd.push(id) }
            text += try sd.flush()
            let full = try tok.decode(context + answer)
            let before = try tok.decode(context)
            XCTAssertTrue(full.hasPrefix(before), name)
            XCTAssertEqual(text, String(full.dropFirst(before.count)), name)
        }
    }

    func testIsCleanWhileAByteSequenceIsIncomplete() throws {
        let tok = try Tokenizer.load(from: try FixtureParityTests.fixtureURL("neox_bpe"))
        let ids = try tok.encode("😀", addSpecialTokens: false).ids
        XCTAssertGreaterThan(ids.count, 1, "byte-level BPE splits the emoji over several tokens")
        var sd = tok.makeStreamDecoder()
        XCTAssertEqual(try sd.push(ids[0]), "")
        XCTAssertFalse(sd.isClean, "half an emoji is held back")
        var rest = ""
        for id in ids.dropFirst() { rest += try sd.push(id) }
        XCTAssertEqual(rest, "😀")
        XCTAssertTrue(sd.isClean)
    }
}
