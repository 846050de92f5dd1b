/// Hugging Face tokenizer.json loading (Unigram and byte-level BPE with their normalizers, pre-tokenizers, post-processors and decoders) and incremental detokenization for streaming.
///
/// See ../../README.md for the architecture.
public enum TokenizersModule {
    /// Shown by `mambaformer --version` per component.
    public static let name = "Tokenizers"
}
