import Engine
import Tokenizers
import Vocabulary

/// How an expert turns a span request (canonical prompt + answer so far, as text) into
/// token ids for its own model. Text is the lingua franca between experts: each one
/// re-tokenizes with its own tokenizer, so answers may switch experts mid-way.
///
/// The canonical answer text never starts with whitespace. The templates match the demo
/// checkpoint's training format (tools/train): ET5 reads the prompt in its encoder and the
/// answer in its decoder; EMamba reads "<prompt> answer: <answer>" as one causal sequence.
public struct PromptFormat: Sendable {
    public var answerMarker = " answer:"

    public init() {}

    public struct Inputs: Equatable {
        /// T5 only: the encoder's token ids.
        public var encoder: [Int]?
        /// The token ids the decoder (T5) or the causal model (Mamba) must have consumed
        /// before generating the next token.
        public var decoder: [Int]
    }

    public func inputs(for span: SpanRequest, model: ExpertModel, tokenizer: Tokenizer) throws -> Inputs {
        if let start = model.decoderStartTokenId {
            let encoder = try tokenizer.encode(span.prompt, addSpecialTokens: true).ids
            let answer = span.answerSoFar.isEmpty ? [] : try tokenizer.encode(span.answerSoFar, addSpecialTokens: false).ids
            return Inputs(encoder: encoder, decoder: [start] + answer)
        }
        let text = span.answerSoFar.isEmpty ? span.prompt + answerMarker
                                            : span.prompt + answerMarker + " " + span.answerSoFar
        return Inputs(encoder: nil, decoder: try tokenizer.encode(text, addSpecialTokens: true).ids)
    }
}
