import Gate
import Engine
import Generation
import Foundation
import Tokenizers
import Vocabulary

/// One question–answer pair of a JSONL dataset: `{"question", "context"?, "answer"}`.
public struct QAExample: Sendable, Equatable {
    public var question: String
    public var context: String
    public var answer: String
    public init(question: String, context: String = "", answer: String) {
        self.question = question; self.context = context; self.answer = answer
    }

    /// Reads a JSONL file; blank lines are skipped, a bad line fails naming its number.
    public static func load(_ url: URL, limit: Int? = nil) throws -> [QAExample] {
        guard let data = FileManager.default.contents(atPath: url.path) else { throw GateError.missingFile(url.path) }
        guard let text = String(data: data, encoding: .utf8) else {
            throw GateError.invalidData(file: url.path, line: 0, reason: "not UTF-8")
        }
        var examples: [QAExample] = []
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if let limit, examples.count >= limit { break }
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { continue }
            guard let object = (try? JSONSerialization.jsonObject(with: Data(trimmed.utf8))) as? [String: Any] else {
                throw GateError.invalidData(file: url.path, line: i + 1, reason: "not a JSON object")
            }
            guard let question = object["question"] as? String, !question.isEmpty else {
                throw GateError.invalidData(file: url.path, line: i + 1, reason: "\"question\" must be a non-empty string")
            }
            guard let answer = object["answer"] as? String else {
                throw GateError.invalidData(file: url.path, line: i + 1, reason: "\"answer\" must be a string")
            }
            let context = object["context"] as? String ?? ""
            examples.append(QAExample(question: question, context: context, answer: answer))
        }
        return examples
    }

    public var prompt: String { TrainedGate.promptText(question: question, context: context) }
}

/// What one expert says about a reference answer when it is fed token by token
/// (teacher forcing, exactly the decode path the cluster runs): per expert token its byte
/// range in the answer, log-likelihood, probability, entropy, and the measured step cost.
public struct ExpertScore: Sendable {
    public var offsets: [Range<Int>]
    public var logLikelihood: [Float]
    public var entropy: [Float]
    /// Mean wall time of one decode step (µs) for this example.
    public var stepUs: Float
}

/// Runs one expert teacher-forced over prompt + reference answer, formatting the input with
/// the expert node's own PromptFormat (the same token ids the cluster would feed).
public final class TeacherForcer {
    public let pool: PoolKind
    public let model: ExpertModel
    public let tokenizer: Tokenizer
    let format = PromptFormat()

    public init(pool: PoolKind, folder: URL) throws {
        self.pool = pool
        model = try loadExpertModel(from: folder)
        tokenizer = try Tokenizer.load(from: folder)
    }

    public func score(_ example: QAExample) throws -> ExpertScore {
        let answer = example.answer
        let span = SpanRequest(requestId: "train", spanIndex: 0, prompt: example.prompt, answerSoFar: answer,
                               maxNewTokens: 1, sampling: Sampling(), sessionHint: "train", answerTokensBefore: 0)
        let inputs = try format.inputs(for: span, model: model, tokenizer: tokenizer)
        // Which of the decoder ids are the answer, and their byte ranges in `answer`.
        let prefix: [Int]
        let answerIds: [Int]
        let offsets: [Range<Int>]
        if model.decoderStartTokenId != nil {
            let encoding = try tokenizer.encode(answer, addSpecialTokens: false)
            guard Array(inputs.decoder.dropFirst()) == encoding.ids else {
                throw GateError.expert("\(pool): the answer's token ids differ from PromptFormat's (\(example.question))")
            }
            prefix = Array(inputs.decoder.prefix(1))
            answerIds = encoding.ids
            offsets = encoding.offsets
        } else {
            let head = example.prompt + format.answerMarker + " "
            let start = head.utf8.count
            let encoding = try tokenizer.encode(head + answer, addSpecialTokens: true)
            guard encoding.ids == inputs.decoder else {
                throw GateError.expert("\(pool): the sequence's token ids differ from PromptFormat's (\(example.question))")
            }
            let first = encoding.offsets.firstIndex { $0.upperBound > start && !$0.isEmpty } ?? encoding.ids.count
            prefix = Array(encoding.ids[..<first])
            answerIds = Array(encoding.ids[first...])
            offsets = encoding.offsets[first...].map { max(0, $0.lowerBound - start)..<max(0, $0.upperBound - start) }
        }
        guard !prefix.isEmpty else { throw GateError.expert("\(pool): empty input for \(example.question)") }
        let session = try model.makeSession(encoderInput: inputs.encoder)
        var logits = try model.feed(session, tokens: prefix)
        var ll: [Float] = [], entropy: [Float] = []
        var stepNs: UInt64 = 0
        for (i, token) in answerIds.enumerated() {
            let stats = Self.distribution(logits, token: token)
            ll.append(stats.logProbability); entropy.append(stats.entropy)
            if i + 1 < answerIds.count {
                let start = DispatchTime.now().uptimeNanoseconds
                logits = try model.step([session], tokens: [token])
                stepNs += DispatchTime.now().uptimeNanoseconds - start
            }
        }
        let steps = max(1, answerIds.count - 1)
        var stepUs = Float(stepNs) / Float(steps) / 1000
        if answerIds.count <= 1 {
            // No step was timed: time one step so the example still carries a measured cost.
            let start = DispatchTime.now().uptimeNanoseconds
            _ = try model.step([session], tokens: [answerIds.first ?? prefix.last!])
            stepUs = Float(DispatchTime.now().uptimeNanoseconds - start) / 1000
        }
        return ExpertScore(offsets: offsets, logLikelihood: ll, entropy: entropy, stepUs: stepUs)
    }

    /// log p(token), and the entropy (nats) of softmax(logits).
    public static func distribution(_ logits: [Float], token: Int) -> (logProbability: Float, entropy: Float) {
        guard let m = logits.max(), token >= 0, token < logits.count else { return (-Float.infinity, 0) }
        var sum: Double = 0, weighted: Double = 0
        for v in logits {
            let e = exp(Double(v - m))
            sum += e; weighted += e * Double(v - m)
        }
        let lse = log(sum)
        let entropy = lse - weighted / sum
        return (Float(Double(logits[token] - m) - lse), Float(entropy))
    }
}

/// One training example scored by both experts and moved onto the gate's tokens.
public struct ScoredExample: Sendable {
    public var prompt: GateText
    public var answer: GateText
    /// Per gate answer token.
    public var llET5: [Float]
    public var llEMamba: [Float]
    public var costET5: [Float]
    public var costEMamba: [Float]
    public var entropyEMamba: [Float]
}

extension ScoredExample {
    /// Aligns both experts' scores to the gate tokens of the answer. Costs are per expert
    /// token (the measured step time), so a gate token costs what its covering tokens cost.
    public static func make(prompt: GateText, answer: GateText, et5: ExpertScore, emamba: ExpertScore) -> ScoredExample {
        let g = answer.offsets
        func align(_ v: [Float], _ s: ExpertScore) -> [Float] {
            OffsetAlignment.align(values: v, expertOffsets: s.offsets, gateOffsets: g)
        }
        return ScoredExample(
            prompt: prompt, answer: answer,
            llET5: align(et5.logLikelihood, et5), llEMamba: align(emamba.logLikelihood, emamba),
            costET5: align(Array(repeating: et5.stepUs, count: et5.offsets.count), et5),
            costEMamba: align(Array(repeating: emamba.stepUs, count: emamba.offsets.count), emamba),
            entropyEMamba: align(emamba.entropy, emamba))
    }
}
