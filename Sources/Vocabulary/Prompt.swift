extension AnswerRequest {
    /// The prompt text every expert receives in a `SpanRequest`; each expert wraps it in its
    /// own template (Generation's PromptFormat). Part of the contract: the router builds it,
    /// in-process tools must build the same.
    public var canonicalPrompt: String {
        context.isEmpty ? "question: \(question)" : "question: \(question) context: \(context)"
    }
}
