import Foundation
import Wire

/// A validated answer request, common to `/v1/answer` and `/v1/chat/completions`.
struct AnswerParams: Equatable {
    var question: String
    var context: String = ""
    var maxTokens: Int
    var policy = Policy()
    var sampling = Sampling()
    var stream = false
    var deadlineMs: Int
    /// Stop strings (`stop`): the answer ends before the first one (matched at the gateway).
    var stop: [String] = []
    /// `logprobs`: each token's log-probability in the response; `topLogprobs` alternatives each.
    var logprobs = false
    var topLogprobs = 0

    /// The wire request, with the gateway's id and its deadline (time left, and the wall-clock
    /// instant 1.1 routers read).
    func wireRequest(requestId: String, now: Date, spanTokens: UInt32) -> AnswerRequest {
        var request = AnswerRequest(requestId: requestId, question: question, context: context,
                                    maxNewTokens: UInt32(maxTokens), policy: policy, sampling: sampling,
                                    spanTokens: spanTokens, topLogprobs: logprobs ? UInt32(topLogprobs) : 0)
        request.setDeadline(timeLeft: UInt64(max(1, deadlineMs)), wallNowMs: UInt64(max(0, now.timeIntervalSince1970 * 1000)))
        return request
    }
}

enum RequestParsing {
    /// Bytes → JSON object, telling invalid UTF-8, malformed JSON and a non-object apart.
    static func jsonObject(_ bytes: [UInt8]) throws -> JSONFields {
        guard String(validating: bytes, as: UTF8.self) != nil else { throw GatewayError.invalidUTF8 }
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
            throw GatewayError.invalidJSON("the body is empty")
        }
        // Foundation's parser accepts `{"a": 1,}` and `[1,]`; JSON (RFC 8259) does not, and a
        // stray comma often marks a field the client meant to add and did not.
        if let offset = trailingComma(bytes) {
            throw GatewayError.invalidJSON("trailing comma at byte \(offset)")
        }
        let value: JSONValue
        do {
            value = try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
        } catch let DecodingError.dataCorrupted(context) {
            throw GatewayError.invalidJSON(Self.describe(context))
        } catch let DecodingError.typeMismatch(_, context) {
            // Every JSON value maps to a JSONValue case except a number no Double can hold (1e400).
            let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
            throw GatewayError.invalidJSON("the number at `\(path)` is out of range")
        } catch {
            throw GatewayError.invalidJSON("could not parse")
        }
        guard case .object(let fields) = value else {
            throw GatewayError(.unprocessableContent, "invalid_type", "the body must be a JSON object, got \(value.kindName)")
        }
        return JSONFields(fields)
    }

    /// Offset of a `,` followed (after whitespace) by `}` or `]`, outside strings.
    static func trailingComma(_ bytes: [UInt8]) -> Int? {
        var inString = false, escaped = false
        var lastComma: Int?
        for (i, byte) in bytes.enumerated() {
            if inString {
                if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true }
                else if byte == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true; lastComma = nil
            case UInt8(ascii: ","): lastComma = i
            case UInt8(ascii: "}"), UInt8(ascii: "]"): if let lastComma { return lastComma }
            case 0x20, 0x0A, 0x0D, 0x09: break
            default: lastComma = nil
            }
        }
        return nil
    }

    private static func describe(_ context: DecodingError.Context) -> String {
        // The underlying JSON error names the position; the body itself is never echoed.
        if let underlying = context.underlyingError as NSError?,
           let detail = underlying.userInfo[NSDebugDescriptionErrorKey] as? String {
            return detail
        }
        return context.debugDescription
    }

    static let answerFields = ["question", "context", "max_tokens", "cost_weight", "expert", "temperature",
                               "top_p", "top_k", "seed", "repetition_penalty", "stream", "deadline_ms", "stop",
                               "logprobs", "top_logprobs"]

    /// `POST /v1/answer`. Unknown fields are REFUSED (422 `unknown_field`): this API is ours, and
    /// a misspelt `max_token` or `temprature` silently ignored would change a clinical answer
    /// without anyone noticing.
    static func answer(_ bytes: [UInt8], config: GatewayConfig) throws -> AnswerParams {
        let json = try jsonObject(bytes)
        try json.refuseUnknown(allowed: answerFields)
        guard let question = try json.string("question") else { throw GatewayError.missingField("question") }
        var params = AnswerParams(question: question, maxTokens: config.defaultMaxTokens,
                                  deadlineMs: config.defaultDeadlineMs)
        params.context = try json.string("context") ?? ""
        try applyCommon(json, to: &params, maxTokensKeys: ["max_tokens"], temperatureMax: 5, config: config)
        try checkPrompt(params, config: config)
        return params
    }

    /// Fields both endpoints share: limits, sampling, routing policy, streaming, deadline.
    private static func applyCommon(_ json: JSONFields, to params: inout AnswerParams, maxTokensKeys: [String],
                                    temperatureMax: Double, config: GatewayConfig) throws {
        for key in maxTokensKeys {
            if let n = try json.int(key, in: Int64.min...Int64.max) {
                guard n >= 1 else { throw GatewayError.invalidValue(key, "must be at least 1, got \(n)") }
                guard n <= config.maxTokens else { throw GatewayError.maxTokensTooLarge(Int(n), limit: config.maxTokens) }
                params.maxTokens = Int(n)
            }
        }
        if let w = try json.number("cost_weight", in: 0...1) {
            params.policy.costWeight = Float(w)
        } else {
            // None given: the router's checkpoint knows its best point (a 1.3 router uses 0.5).
            params.policy.defaultCostWeight = true
        }
        if let expert = try json.string("expert") {
            switch expert {
            case "emamba": params.policy.forced = .emamba
            case "et5": params.policy.forced = .et5
            case "auto": params.policy.forced = .unspecified
            default: throw GatewayError.invalidValue("expert", "must be \"emamba\", \"et5\" or \"auto\", got \"\(expert)\"")
            }
        }
        if let t = try json.number("temperature", in: 0...temperatureMax) { params.sampling.temperature = Float(t) }
        if let p = try json.number("top_p", in: 0...1) { params.sampling.topP = Float(p) }
        if let k = try json.int("top_k", in: 0...Int64(UInt32.max)) { params.sampling.topK = UInt32(k) }
        if let s = try json.uint64("seed") {
            params.sampling.seed = s
        } else if params.sampling.temperature > 0 {
            // A sampled request without a seed gets a fresh one (returned in the response), so
            // two such requests differ and any answer can be reproduced. At most 2^53 - 1: a
            // JavaScript client reads it back exactly.
            params.sampling.seed = UInt64.random(in: 1...(1 << 53) - 1)
        }
        if let r = try json.number("repetition_penalty", in: 0...10) { params.sampling.repetitionPenalty = Float(r) }
        if let s = try json.bool("stream") { params.stream = s }
        if let d = try json.int("deadline_ms", in: 1...Int64(config.maxDeadlineMs)) { params.deadlineMs = Int(d) }
        params.stop = try stopStrings(json)
        params.logprobs = try json.bool("logprobs") ?? false
        // Alternatives come with the tokens' own log-probabilities: without `logprobs` they are
        // not asked for (the value is still checked).
        if let n = try json.int("top_logprobs", in: 0...Int64(TopLogprobs.max)), params.logprobs {
            params.topLogprobs = Int(n)
        }
    }

    /// `stop`: one string or up to four (OpenAI's shape), each 1…128 characters; null or [] is none.
    private static func stopStrings(_ json: JSONFields) throws -> [String] {
        guard let value = json.values["stop"], value != .null else { return [] }
        let items: [JSONValue]
        switch value {
        case .string: items = [value]
        case .array(let a): items = a
        default: throw GatewayError.invalidType("stop", expected: "a string or an array of strings", got: value.kindName)
        }
        guard items.count <= StopMatcher.maxCount else {
            throw GatewayError.invalidValue("stop", "at most \(StopMatcher.maxCount) stop strings, got \(items.count)")
        }
        return try items.enumerated().map { i, item in
            guard case .string(let s) = item else {
                throw GatewayError.invalidType("stop[\(i)]", expected: "a string", got: item.kindName)
            }
            guard (1...StopMatcher.maxLength).contains(s.unicodeScalars.count) else {
                throw GatewayError.invalidValue("stop[\(i)]", "must be 1 to \(StopMatcher.maxLength) characters, got \(s.unicodeScalars.count)")
            }
            return s
        }
    }

    private static func checkPrompt(_ params: AnswerParams, config: GatewayConfig) throws {
        // Blank as JSON Schema validators written in Python see it too (they count the
        // separators U+001C–U+001F as whitespace).
        if params.question.unicodeScalars.allSatisfy({ CharacterSet.whitespacesAndNewlines.contains($0) || (0x1C...0x1F).contains($0.value) }) {
            throw GatewayError.emptyQuestion
        }
        // The canonical prompt, as the router and the experts count it: one limit, one count.
        let bytes = AnswerRequest(requestId: "", question: params.question, context: params.context).canonicalPrompt.utf8.count
        if bytes > config.maxPromptBytes { throw GatewayError.promptTooLong(bytes, "bytes", limit: config.maxPromptBytes) }
    }

    /// A parsed chat request: the answer parameters plus what the OpenAI response echoes.
    struct Chat: Equatable {
        var params: AnswerParams
        var model: String
        var includeUsageInStream: Bool
    }

    /// `POST /v1/chat/completions`. Unknown fields are IGNORED here: OpenAI client libraries and
    /// frameworks send fields we have no use for (`user`, `presence_penalty`, `logprobs`, ...),
    /// and refusing them would break "existing clients work unchanged". Fields that would change
    /// the answer's shape if ignored (`n` > 1, `tools`) are refused with 422 `unsupported`.
    ///
    /// Messages map to the expert's inputs: the last message must be the user's and is the
    /// question; everything before it (system prompt, earlier turns as "role: text") is the context.
    static func chat(_ bytes: [UInt8], config: GatewayConfig) throws -> Chat {
        let json = try jsonObject(bytes)
        let model = try json.string("model") ?? config.modelName
        guard let messages = try json.array("messages") else { throw GatewayError.missingField("messages") }
        guard !messages.isEmpty else { throw GatewayError.invalidValue("messages", "must not be empty") }

        var turns: [(role: String, text: String)] = []
        for (i, message) in messages.enumerated() {
            let name = "messages[\(i)]"
            guard case .object(let fields) = message else {
                throw GatewayError.invalidType(name, expected: "an object", got: message.kindName)
            }
            let m = JSONFields(fields, path: name + ".")
            guard let role = try m.string("role") else { throw GatewayError.missingField(name + ".role") }
            guard ["system", "developer", "user", "assistant", "tool"].contains(role) else {
                throw GatewayError.invalidValue(name + ".role", "must be system, developer, user, assistant or tool, got \"\(role)\"")
            }
            turns.append((role, try content(of: m, name: name)))
        }
        // The last message, whatever its role (a user's question, a tool's result, an
        // assistant's prefix to continue), is what the experts answer; the rest is context.
        guard let last = turns.last else { throw GatewayError.invalidValue("messages", "must not be empty") }
        let context = turns.dropLast().map { turn -> String in
            turn.role == "system" || turn.role == "developer" ? turn.text : "\(turn.role): \(turn.text)"
        }.filter { !$0.isEmpty }.joined(separator: "\n\n")

        if let n = try json.int("n", in: Int64.min...Int64.max), n != 1 {
            throw GatewayError.unsupported("n", "only one choice per request is supported")
        }
        if let tools = json.values["tools"], tools != .null, tools != .array([]) {
            throw GatewayError.unsupported("tools", "tool calling is not supported")
        }

        var params = AnswerParams(question: last.text, context: context, maxTokens: config.defaultMaxTokens,
                                  deadlineMs: config.defaultDeadlineMs)
        try applyCommon(json, to: &params, maxTokensKeys: ["max_tokens", "max_completion_tokens"],
                        temperatureMax: 2, config: config)
        try checkPrompt(params, config: config)
        let includeUsage = try json.object("stream_options")?.bool("include_usage") ?? false
        return Chat(params: params, model: model.isEmpty ? config.modelName : model,
                    includeUsageInStream: includeUsage)
    }

    /// Message content: a string, or an array of `{"type": "text", "text": ...}` parts.
    private static func content(of m: JSONFields, name: String) throws -> String {
        // Every message says something (no tool calls here, whose messages may lack content).
        guard let value = m.values["content"] else { throw GatewayError.missingField(name + ".content") }
        switch value {
        case .string(let s):
            return s
        case .array(let parts):
            var text = ""
            for (j, part) in parts.enumerated() {
                let partName = "\(name).content[\(j)]"
                guard case .object(let pf) = part else {
                    throw GatewayError.invalidType(partName, expected: "an object", got: part.kindName)
                }
                let p = JSONFields(pf, path: partName + ".")
                let type = try p.string("type") ?? "text"
                guard type == "text" else {
                    throw GatewayError.unsupported(partName + ".type", "only text content is supported, got \"\(type)\"")
                }
                text += try p.string("text") ?? ""
            }
            return text
        default:
            throw GatewayError.invalidType(name + ".content", expected: "a string or an array of text parts",
                                           got: value.kindName)
        }
    }
}
