import Foundation
import Vocabulary

/// The learned gate the router runs before every span: features of prompt + answer so far
/// (gate tokenization), the causal network over the last `window` positions only (p_t is
/// causal, so earlier positions cannot change the decision inputs beyond the conv's reach),
/// then the policy. The prompt's tokenization is cached per prompt text: a request asks
/// once per span and its prompt does not change.
public final class TrainedGate: SpanGate, @unchecked Sendable {
    public var kind: String { "trained" }
    public let bundle: GateBundle
    private let lock = NSLock()
    private var promptCache: [String: GateText] = [:]
    private var promptOrder: [String] = []
    public let maxCachedPrompts: Int

    public init(bundle: GateBundle, maxCachedPrompts: Int = 256) {
        self.bundle = bundle; self.maxCachedPrompts = maxCachedPrompts
    }

    public convenience init(directory: URL) throws { self.init(bundle: try GateBundle.load(from: directory)) }

    /// The prompt text the gate reads: the canonical prompt every expert receives.
    public static func promptText(question: String, context: String) -> String {
        AnswerRequest(requestId: "", question: question, context: context).canonicalPrompt
    }

    private func promptTokens(_ text: String) throws -> GateText {
        lock.lock(); defer { lock.unlock() }
        if let cached = promptCache[text] { return cached }
        let tokens = try bundle.featurizer.tokenize(text)
        promptCache[text] = tokens
        promptOrder.append(text)
        if promptOrder.count > maxCachedPrompts { promptCache[promptOrder.removeFirst()] = nil }
        return tokens
    }

    /// The feature sequence the gate sees for `input`; every generated token carries the
    /// previous span's confidence (the router knows no finer).
    public func sequence(_ input: GateInput) throws -> GateSequence {
        let prompt = try promptTokens(Self.promptText(question: input.question, context: input.context))
        let answer = input.answerSoFar.isEmpty ? GateText.empty : try bundle.featurizer.tokenize(input.answerSoFar)
        let confidence: [TokenConfidence?] = input.previousConfidence.map { c in
            Array(repeating: TokenConfidence(probability: c, entropy: input.previousEntropy ?? 0), count: answer.count)
        } ?? []
        return bundle.featurizer.sequence(prompt: prompt, answer: answer, confidence: confidence)
    }

    /// p_t over the decision window (the last `policy.window` tokens).
    public func windowProbabilities(_ input: GateInput) throws -> [Float] {
        let seq = try sequence(input)
        let n = seq.count
        guard n > 0 else { return [] }
        return bundle.network.forward(seq, range: max(0, n - bundle.file.policy.window)..<n).probabilities
    }

    public func decide(_ input: GateInput) -> GateDecision {
        // Tokenizing a Swift String cannot fail on valid text; if it ever does, the cheap
        // expert (or the forced one) is the safe answer.
        let probabilities = (try? windowProbabilities(input)) ?? []
        return bundle.file.policy.decide(probabilities: probabilities, policy: input.policy, previous: input.previous)
    }
}

/// Which gate a router runs: `auto` = the checkpoint's trained gate when it has a `gate/`
/// folder with gate.json, else the rule; `trained` requires one; `rule`; `alternate` (tests).
public enum GateChoice {
    public static let names = ["auto", "trained", "rule", "alternate"]

    public static func make(_ choice: String, gateDirectory: URL?) throws -> SpanGate {
        func trainedDirectory() -> URL? {
            guard let dir = gateDirectory,
                  FileManager.default.fileExists(atPath: dir.appendingPathComponent(GateBundle.jsonName).path) else { return nil }
            return dir
        }
        switch choice {
        case "rule": return RuleGate()
        case "alternate": return AlternatingGate()
        case "auto":
            if let dir = trainedDirectory() { return try TrainedGate(directory: dir) }
            return RuleGate()
        case "trained":
            guard let dir = trainedDirectory() else {
                throw GateError.missingFile((gateDirectory?.path ?? "<checkpoint>/gate") + "/" + GateBundle.jsonName
                                            + " (train one with `mambaformer gate train`)")
            }
            return try TrainedGate(directory: dir)
        default:
            throw GateError.invalidArgument("--gate must be one of \(names.joined(separator: ", ")) (got \(choice))")
        }
    }
}
