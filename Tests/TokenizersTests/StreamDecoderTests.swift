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
