import Foundation

/// Everything that can go wrong loading or running a tokenizer. Messages name the file,
/// the component and the offending value, so a user can fix the input without reading code.
public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    /// The path does not exist, or is a folder without a tokenizer.json.
    case fileNotFound(path: String)
    /// The file is not JSON, or a field has the wrong shape.
    case malformed(file: String, detail: String)
    /// A component (`section` = normalizer, pre_tokenizer, model, post_processor, decoder)
    /// whose `type` this implementation does not support.
    case unsupportedComponent(section: String, type: String, hint: String)
    /// A supported component with an option value this implementation does not support.
    case unsupportedOption(section: String, option: String, value: String)
    /// Input bytes that are not valid UTF-8 (`offset` = first bad byte).
    case invalidUTF8(offset: Int)
    /// An id that is neither in the model's vocabulary nor an added token.
    case unknownId(id: Int, vocabSize: Int)
    /// The model cannot represent a piece of input (e.g. no unk token configured).
    case cannotEncode(detail: String)

    public var description: String {
        switch self {
        case .fileNotFound(let path):
            return "tokenizer: no tokenizer.json at \(path) (pass a tokenizer.json file or a folder containing one)"
        case .malformed(let file, let detail):
            return "tokenizer: \(file) is not a valid tokenizer.json: \(detail)"
        case .unsupportedComponent(let section, let type, let hint):
            return "tokenizer: unsupported \(section) type \"\(type)\"\(hint.isEmpty ? "" : " (\(hint))")"
        case .unsupportedOption(let section, let option, let value):
            return "tokenizer: unsupported \(section) option \(option) = \(value)"
        case .invalidUTF8(let offset):
            return "tokenizer: input is not valid UTF-8 (first invalid byte at offset \(offset))"
        case .unknownId(let id, let vocabSize):
            return "tokenizer: id \(id) is not in the vocabulary (valid ids are 0..<\(vocabSize))"
        case .cannotEncode(let detail):
            return "tokenizer: cannot encode input: \(detail)"
        }
    }
}

/// Typed access to the untyped JSONSerialization tree, with errors naming the path.
struct JSONObject {
    let dict: [String: Any]
    let path: String
    let file: String

    func fail(_ detail: String) -> TokenizerError { .malformed(file: file, detail: "\(path): \(detail)") }

    func has(_ key: String) -> Bool { if let v = dict[key] { return !(v is NSNull) } else { return false } }

    func string(_ key: String) throws -> String {
        guard let v = dict[key] as? String else { throw fail("field \"\(key)\" must be a string") }
        return v
    }
    func optString(_ key: String) throws -> String? {
        guard has(key) else { return nil }
        return try string(key)
    }
    func bool(_ key: String, default d: Bool) throws -> Bool {
        guard has(key) else { return d }
        guard let v = dict[key] as? Bool else { throw fail("field \"\(key)\" must be true or false") }
        return v
    }
    func int(_ key: String, default d: Int? = nil) throws -> Int {
        guard has(key) else {
            if let d { return d }
            throw fail("missing integer field \"\(key)\"")
        }
        let v = dict[key]!
        if type(of: v) != Bool.self, let i = v as? Int { return i }
        if type(of: v) != Bool.self, let n = v as? NSNumber, n.doubleValue == n.doubleValue.rounded() { return n.intValue }
        throw fail("field \"\(key)\" must be an integer")
    }
    func object(_ key: String) throws -> JSONObject {
        guard let v = dict[key] as? [String: Any] else { throw fail("field \"\(key)\" must be an object") }
        return JSONObject(dict: v, path: path + "." + key, file: file)
    }
    func optObject(_ key: String) throws -> JSONObject? {
        guard has(key) else { return nil }
        return try object(key)
    }
    func array(_ key: String) throws -> [Any] {
        guard let v = dict[key] as? [Any] else { throw fail("field \"\(key)\" must be an array") }
        return v
    }
    func objects(_ key: String) throws -> [JSONObject] {
        try array(key).enumerated().map { i, v in
            guard let d = v as? [String: Any] else { throw fail("\(key)[\(i)] must be an object") }
            return JSONObject(dict: d, path: "\(path).\(key)[\(i)]", file: file)
        }
    }
    /// A `{"String": "..."}` or `{"Regex": "..."}` pattern (Replace, Split).
    func pattern(_ key: String) throws -> Pattern {
        let p = try object(key)
        if let s = p.dict["String"] as? String { return .literal(Array(s.unicodeScalars)) }
        if let r = p.dict["Regex"] as? String { return try .regex(RegexPattern(r, file: file, path: p.path)) }
        throw p.fail("pattern must be {\"String\": ...} or {\"Regex\": ...}")
    }
}
