import Foundation
import XCTest
@testable import Tokenizers

/// BPE merge order in the corners fixtures do not reach. Expected tokens are Hugging Face
/// tokenizers 0.23.3's on the same tokenizer.json.
final class MergeOrderTests: XCTestCase {
    /// A pair listed twice in `merges` takes its last rank (Hugging Face collects the list into
    /// a map, later entries overwriting): here "a b" ranks after "b c".
    func testADuplicatedMergeTakesItsLastRank() throws {
        let json = #"""
            {"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
             "pre_tokenizer":{"type":"WhitespaceSplit"},"post_processor":null,"decoder":null,
             "model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,
              "end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,
              "vocab":{"a":0,"b":1,"c":2,"ab":3,"bc":4,"abc":5},
              "merges":["a b","b c","a b"]}}
            """#
        let tok = try Tokenizer(json: Data(json.utf8))
        XCTAssertEqual(try tok.encode("abc").tokens, ["a", "bc"])
        XCTAssertEqual(try tok.encode("ab").tokens, ["ab"])
        XCTAssertEqual(try tok.encode("abcabc").tokens, ["a", "bc", "a", "bc"])
    }

    /// One word of 20,000 letters with merges everywhere: the priority-queue merge gives the
    /// same tokens as the rule it replaces (lowest rank first, leftmost among equals).
    func testALongWordMergesLowestRankLeftmostFirst() throws {
        let json = #"""
            {"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
             "pre_tokenizer":{"type":"WhitespaceSplit"},"post_processor":null,"decoder":null,
             "model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,
              "end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,
              "vocab":{"a":0,"aa":1,"aaaa":2},
              "merges":["a a","aa aa"]}}
            """#
        let tok = try Tokenizer(json: Data(json.utf8))
        // Pairs merge left to right, then pairs of pairs: 20,001 letters → 5,000 × "aaaa" + "a".
        let tokens = try tok.encode(String(repeating: "a", count: 20_001)).tokens
        XCTAssertEqual(tokens.count, 5_001)
        XCTAssertEqual(Set(tokens.dropLast()), ["aaaa"])
        XCTAssertEqual(tokens.last, "a")
    }
}
