import Foundation
import XCTest
@testable import Tokenizers

/// Parity with Hugging Face `tokenizers` 0.23.3 on the fixtures written by
/// tools/fixtures/tokenizers/make_fixtures.py: identical ids, tokens, offsets, masks and decodes.
final class FixtureParityTests: XCTestCase {
    static let names = ["t5_unigram", "t5_unigram_first", "spm_t5", "neox_bpe", "llama_bpe", "misc_bpe"]

    struct Expected: Decodable {
        struct Side: Decodable {
            let ids: [Int]; let tokens: [String]; let offsets: [[Int]]
            let special_tokens_mask: [Int]; let decode_skip: String; let decode_keep: String
        }
        struct Case: Decodable { let text: String; let with_special: Side; let without_special: Side }
        struct Dec: Decodable { let ids: [Int]; let decode_skip: String; let decode_keep: String }
        let cases: [Case]; let decodes: [Dec]
    }

    static func scalars(_ s: String) -> [UInt32] { s.unicodeScalars.map { $0.value } }

    static func fixtureURL(_ name: String) throws -> URL {
        guard let u = Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil) else {
            XCTFail("missing fixture \(name): the fixtures are committed")
            throw CocoaError(.fileNoSuchFile)
        }
        return u
    }

    static func load(_ name: String) throws -> (Tokenizer, Expected) {
        let dir = try fixtureURL(name)
        let tok = try Tokenizer.load(from: dir)
        let data = try Data(contentsOf: dir.appendingPathComponent("expected.json"))
        return (tok, try JSONDecoder().decode(Expected.self, from: data))
    }

    /// Texts whose offsets we knowingly do not reproduce (none at present; keep the
    /// mechanism so a future deviation is listed here, explained, instead of hidden).
    static let knownOffsetDeviations: Set<String> = []

    func checkEncode(_ name: String) throws {
        let (tok, exp) = try Self.load(name)
        XCTAssertGreaterThanOrEqual(exp.cases.count, 100)
        var failures = 0
        for c in exp.cases {
            for (add, side) in [(true, c.with_special), (false, c.without_special)] {
                let e = try tok.encode(c.text, addSpecialTokens: add)
                let ctx = "\(name) add=\(add) text=\(c.text.debugDescription)"
                // Compare strings scalar by scalar: Swift's == is canonical equivalence, which
                // would hide a composed/decomposed difference.
                if e.ids != side.ids || e.tokens.map(Self.scalars) != side.tokens.map(Self.scalars) {
                    failures += 1
                    XCTFail("\(ctx)\n  ids    \(e.ids)\n  expect \(side.ids)\n  tokens \(e.tokens)\n  expect \(side.tokens)")
                    continue
                }
                let offs = e.offsets.map { [$0.lowerBound, $0.upperBound] }
                if !Self.knownOffsetDeviations.contains(c.text) {
                    XCTAssertEqual(offs, side.offsets, "offsets \(ctx)")
                }
                XCTAssertEqual(e.specialTokensMask, side.special_tokens_mask.map { $0 != 0 }, "mask \(ctx)")
                XCTAssertEqual(Self.scalars(try tok.decode(side.ids, skipSpecialTokens: true)), Self.scalars(side.decode_skip), "decode skip \(ctx)")
                XCTAssertEqual(Self.scalars(try tok.decode(side.ids, skipSpecialTokens: false)), Self.scalars(side.decode_keep), "decode keep \(ctx)")
                if failures > 15 { return }
            }
        }
        for d in exp.decodes {
            XCTAssertEqual(Self.scalars(try tok.decode(d.ids, skipSpecialTokens: true)), Self.scalars(d.decode_skip), "\(name) decode \(d.ids)")
            XCTAssertEqual(Self.scalars(try tok.decode(d.ids, skipSpecialTokens: false)), Self.scalars(d.decode_keep), "\(name) decode \(d.ids)")
        }
    }

    /// Streaming: pushes + flush reproduce the full decode, and no chunk contains U+FFFD
    /// that the full decode does not have (no partial UTF-8 sequences leak mid-stream).
    func checkStream(_ name: String) throws {
        let (tok, exp) = try Self.load(name)
        var sequences = exp.cases.flatMap { [$0.with_special.ids, $0.without_special.ids] }
        sequences += exp.decodes.map { $0.ids }
        for ids in sequences {
            for skip in [true, false] {
                let full = try tok.decode(ids, skipSpecialTokens: skip)
                var sd = tok.makeStreamDecoder(skipSpecialTokens: skip)
                var out = ""
                for id in ids {
                    let chunk = try sd.push(id)
                    if !full.unicodeScalars.contains("\u{FFFD}") {
                        XCTAssertFalse(chunk.unicodeScalars.contains("\u{FFFD}"), "\(name) chunk \(chunk.debugDescription) of \(ids)")
                    }
                    out += chunk
                }
                out += try sd.flush()
                XCTAssertEqual(Self.scalars(out), Self.scalars(full), "\(name) stream of \(ids) skip=\(skip)")
            }
        }
    }

    func testT5UnigramEncode() throws { try checkEncode("t5_unigram") }
    func testT5UnigramFirstEncode() throws { try checkEncode("t5_unigram_first") }
    func testSpmT5PrecompiledEncode() throws { try checkEncode("spm_t5") }
    func testNeoXBPEEncode() throws { try checkEncode("neox_bpe") }
    func testLlamaBPEEncode() throws { try checkEncode("llama_bpe") }
    func testMiscBPEEncode() throws { try checkEncode("misc_bpe") }

    func testStreamingEqualsFullDecode() throws {
        for n in Self.names { try checkStream(n) }
    }
}
