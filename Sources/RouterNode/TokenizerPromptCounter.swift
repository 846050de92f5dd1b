import Foundation
import Tokenizers
import Wire

/// Counts prompts with the pools' own `tokenizer.json` files (the checkpoint's `emamba/` and
/// `et5/`), the way their experts encode them: the whole canonical prompt with the special
/// tokens the post-processor adds. Tokenization is near-linear in the prompt (BPE merges by
/// priority queue, bounded word cache), and the router bounds bytes before it counts.
public struct TokenizerPromptCounter: PromptCounter {
    public let tokenizers: [PoolKind: Tokenizer]

    public init(tokenizers: [PoolKind: Tokenizer]) { self.tokenizers = tokenizers }

    /// Loads `emamba/tokenizer.json` and `et5/tokenizer.json` from a checkpoint's expert folders.
    public init(emamba: URL, et5: URL) throws {
        self.init(tokenizers: [.emamba: try Tokenizer.load(from: emamba), .et5: try Tokenizer.load(from: et5)])
    }

    /// A pool without a tokenizer cannot be counted: refuse rather than count 0.
    public struct MissingTokenizer: Error, CustomStringConvertible {
        public let pool: PoolKind
        public var description: String { "no \(pool) tokenizer was loaded" }
    }

    public func promptTokens(_ prompt: String, pool: PoolKind) throws -> Int {
        guard let tokenizer = tokenizers[pool] else { throw MissingTokenizer(pool: pool) }
        return try tokenizer.encode(prompt, addSpecialTokens: true).ids.count
    }
}
