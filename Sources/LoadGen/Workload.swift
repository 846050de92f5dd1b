import Foundation
import Random

/// One prompt of the workload: a question and, for reading comprehension, a context.
public struct Prompt: Sendable, Equatable, Codable {
    public var question: String
    public var context: String?
    public init(question: String, context: String? = nil) {
        self.question = question; self.context = context
    }
    /// "Long" prompts are the ones with a context (the EMamba side of the paper's split).
    public var isLong: Bool { !(context ?? "").isEmpty }
}

/// The prompts a run draws from, split into short (question only) and long (with context).
public struct Workload: Sendable {
    public let short: [Prompt]
    public let long: [Prompt]
    /// Where the prompts came from, for the report.
    public let source: String

    public init(prompts: [Prompt], source: String = "inline") throws {
        short = prompts.filter { !$0.isLong }
        long = prompts.filter(\.isLong)
        self.source = source
        guard !prompts.isEmpty else { throw LoadGenError.emptyWorkload(source) }
    }

    /// Reads a JSONL file of `{"question": ..., "context"?: ...}` objects (other fields, such
    /// as the dataset's reference `answer`, are ignored). Blank lines are skipped; a bad line
    /// fails with its number, since a silently shrunken workload would skew a benchmark.
    public init(jsonl url: URL) throws {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw LoadGenError.unreadableWorkload(path: url.path, reason: "missing or unreadable")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw LoadGenError.unreadableWorkload(path: url.path, reason: "not UTF-8")
        }
        struct Row: Decodable { var question: String?; var context: String? }
        var prompts: [Prompt] = []
        let decoder = JSONDecoder()
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { continue }
            guard let row = try? decoder.decode(Row.self, from: Data(trimmed.utf8)) else {
                throw LoadGenError.badWorkloadLine(path: url.path, line: i + 1, reason: "not a JSON object")
            }
            guard let q = row.question, !q.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                throw LoadGenError.badWorkloadLine(path: url.path, line: i + 1, reason: "no \"question\" string")
            }
            prompts.append(Prompt(question: q, context: row.context))
        }
        try self.init(prompts: prompts, source: url.path)
    }

    /// Picks a prompt: long with probability `longShare` (when both kinds exist), otherwise
    /// uniformly over all prompts (the file's natural mix) when `longShare` is nil.
    func pick(longShare: Double?, using rng: inout SplitMix64) -> Prompt {
        let pool: [Prompt]
        if let longShare, !short.isEmpty, !long.isEmpty {
            pool = rng.unit() < longShare ? long : short
        } else if longShare == 0, !short.isEmpty {
            pool = short
        } else if longShare == 1, !long.isEmpty {
            pool = long
        } else {
            let all = short.count + long.count
            let i = Int(rng.next() % UInt64(all))
            return i < short.count ? short[i] : long[i - short.count]
        }
        return pool[Int(rng.next() % UInt64(pool.count))]
    }
}

/// A per-request value: fixed ("16") or uniform over an inclusive range ("8-32").
public struct ValueRange: Sendable, Equatable, Codable, CustomStringConvertible {
    public var low: Double
    public var high: Double
    public init(_ value: Double) { low = value; high = value }
    public init(low: Double, high: Double) { self.low = low; self.high = high }

    /// Parses "16", "8-32" or "0.2-0.8"; `integer` also requires whole numbers.
    public init(parsing text: String, option: String, integer: Bool, within bounds: ClosedRange<Double>) throws {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
        let values = parts.compactMap { Double($0) }
        let what = integer ? "an integer" : "a number"
        guard (parts.count == 1 || parts.count == 2), values.count == parts.count, values.allSatisfy(\.isFinite) else {
            throw LoadGenError.invalidOption(option: option, value: text, reason: "expected \(what) or a range LOW-HIGH")
        }
        low = values[0]; high = values.last ?? values[0]
        guard low <= high else {
            throw LoadGenError.invalidOption(option: option, value: text, reason: "the range is reversed")
        }
        guard bounds.contains(low), bounds.contains(high) else {
            throw LoadGenError.invalidOption(option: option, value: text,
                                             reason: "must lie within \(format(bounds.lowerBound))...\(format(bounds.upperBound))")
        }
        if integer, low != low.rounded() || high != high.rounded() {
            throw LoadGenError.invalidOption(option: option, value: text, reason: "expected whole numbers")
        }
    }

    func sampleInt(using rng: inout SplitMix64) -> Int {
        let lo = Int(low), hi = Int(high)
        return lo == hi ? lo : lo + Int(rng.next() % UInt64(hi - lo + 1))
    }

    func sample(using rng: inout SplitMix64) -> Double {
        low == high ? low : low + (high - low) * rng.unit()
    }

    public var description: String { low == high ? format(low) : "\(format(low))-\(format(high))" }
}

/// The `/v1/answer` body of one request. Field names as in openapi.yaml.
public struct AnswerBody: Encodable, Sendable, Equatable {
    public var question: String
    public var context: String?
    public var maxTokens: Int?
    public var costWeight: Double?
    public var expert: String?
    public var stream: Bool
    enum CodingKeys: String, CodingKey {
        case question, context, maxTokens = "max_tokens", costWeight = "cost_weight", expert, stream
    }

    /// The same request as an OpenAI chat completion: the context as the system message, the
    /// question as the user's (our gateway maps them back to context and question), greedy
    /// like `/v1/answer`'s default, with usage in the stream's last chunk. `cost_weight` and
    /// `expert` are our extensions; other servers ignore unknown fields.
    func chat(model: String, ignoreEOS: Bool) -> ChatBody {
        var messages: [ChatBody.Message] = []
        if let context, !context.isEmpty { messages.append(.init(role: "system", content: context)) }
        messages.append(.init(role: "user", content: question))
        return ChatBody(model: model, messages: messages, maxTokens: maxTokens, temperature: 0, stream: stream,
                        streamOptions: stream ? .init(includeUsage: true) : nil, ignoreEOS: ignoreEOS ? true : nil,
                        costWeight: costWeight, expert: expert)
    }
}

/// A `/v1/chat/completions` body (the OpenAI fields the load generator sends).
struct ChatBody: Encodable, Sendable, Equatable {
    struct Message: Encodable, Sendable, Equatable { var role: String; var content: String }
    struct StreamOptions: Encodable, Sendable, Equatable {
        var includeUsage: Bool
        enum CodingKeys: String, CodingKey { case includeUsage = "include_usage" }
    }
    var model: String
    var messages: [Message]
    var maxTokens: Int?
    var temperature: Double
    var stream: Bool
    var streamOptions: StreamOptions?
    var ignoreEOS: Bool?
    var costWeight: Double?
    var expert: String?
    enum CodingKeys: String, CodingKey {
        case model, messages, maxTokens = "max_tokens", temperature, stream, streamOptions = "stream_options",
             ignoreEOS = "ignore_eos", costWeight = "cost_weight", expert
    }
}
