import Foundation

// Hugging Face tokenizer.json loading (Unigram and BPE with their normalizers, pre-tokenizers,
// post-processors and decoders) and incremental detokenization for streaming.

/// The result of encoding one text.
public struct Encoding: Equatable, Sendable {
    public var ids: [Int] = []
    /// Token strings as the model spells them (`▁the`, `Ġthe`, `<0xE6>`, `</s>`); a Unigram
    /// unknown piece keeps the text it covers, as in Hugging Face.
    public var tokens: [String] = []
    /// Per token, the UTF-8 BYTE range of the ORIGINAL input text it comes from (Hugging Face's
    /// offsets, in bytes instead of Python's characters). Tokens made from part of a character
    /// (byte-level BPE, byte fallback) carry the whole character's range; characters inserted by
    /// normalization (Metaspace's `▁`, Prepend) carry the range of the character they attach to;
    /// special tokens added by the post-processor carry 0..<0; byte-level post-processing trims
    /// leading/trailing spaces from the ranges (`trim_offsets`).
    public var offsets: [Range<Int>] = []
    /// True for tokens added by the post-processor (e.g. T5's final `</s>`); special tokens
    /// written inside the text are matched as tokens but are not flagged (as in Hugging Face).
    public var specialTokensMask: [Bool] = []

    public init() {}

    mutating func append(id: Int, token: String, offsets r: Range<Int>, special: Bool) {
        ids.append(id); tokens.append(token); offsets.append(r); specialTokensMask.append(special)
    }
}

/// A Hugging Face `tokenizer.json` tokenizer: added tokens, normalizer, pre-tokenizer,
/// model (Unigram or BPE), post-processor and decoder. Immutable after `load` (the word cache
/// is internally locked), so one instance can be shared by all threads.
public final class Tokenizer: @unchecked Sendable {
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let model: TokenModel
    let postProcessor: PostProcessor?
    let decoder: Decoder?
    let addedTokens: [AddedToken]
    private let rawMatcher: AddedTokenMatcher          // tokens with normalized: false
    private let normalizedMatcher: AddedTokenMatcher   // tokens with normalized: true
    private let addedById: [Int: AddedToken]
    private let addedByContent: [String: AddedToken]
    public let vocabSize: Int
    let hasByteFallbackDecoder: Bool

    /// Load a tokenizer.json file, or a folder containing one.
    public static func load(from url: URL) throws -> Tokenizer {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
            throw TokenizerError.fileNotFound(path: url.path)
        }
        let file = isDir.boolValue ? url.appendingPathComponent("tokenizer.json") : url
        guard FileManager.default.fileExists(atPath: file.path) else { throw TokenizerError.fileNotFound(path: url.path) }
        let data: Data
        do { data = try Data(contentsOf: file) } catch {
            throw TokenizerError.malformed(file: file.path, detail: "cannot read: \(error.localizedDescription)")
        }
        return try Tokenizer(json: data, file: file.path)
    }

    /// Parse tokenizer.json content (`file` only names it in errors).
    public convenience init(json data: Data, file: String = "tokenizer.json") throws {
        let any: Any
        do { any = try JSONSerialization.jsonObject(with: data, options: []) } catch {
            throw TokenizerError.malformed(file: file, detail: "not JSON (\(error.localizedDescription))")
        }
        guard let dict = any as? [String: Any] else { throw TokenizerError.malformed(file: file, detail: "top level must be an object") }
        try self.init(JSONObject(dict: dict, path: "$", file: file))
    }

    init(_ j: JSONObject) throws {
        for key in ["truncation", "padding"] where j.has(key) {
            throw TokenizerError.unsupportedOption(section: "tokenizer", option: key,
                value: "set (only null is supported: truncate/pad the ids yourself)")
        }
        let m = try j.object("model")
        let modelType = try m.optString("type") ?? (m.has("merges") ? "BPE" : "")
        switch modelType {
        case "Unigram": model = try UnigramModel(m)
        case "BPE": model = try BPEModel(m)
        default:
            throw TokenizerError.unsupportedComponent(section: "model", type: modelType.isEmpty ? "(none)" : modelType,
                hint: "supported: Unigram, BPE")
        }
        normalizer = try j.optObject("normalizer").map(Normalizer.parse)
        preTokenizer = try j.optObject("pre_tokenizer").map(PreTokenizer.parse)
        postProcessor = try j.optObject("post_processor").map(PostProcessor.parse)
        decoder = try j.optObject("decoder").map(Decoder.parse)

        var added: [AddedToken] = []
        if j.has("added_tokens") {
            for t in try j.objects("added_tokens") {
                let content = try t.string("content")
                let special = try t.bool("special", default: false)
                added.append(AddedToken(id: try t.int("id"), content: content, scalars: Array(content.unicodeScalars),
                                        singleWord: try t.bool("single_word", default: false),
                                        lstrip: try t.bool("lstrip", default: false), rstrip: try t.bool("rstrip", default: false),
                                        normalized: try t.bool("normalized", default: !special), special: special))
            }
        }
        addedTokens = added
        var byId: [Int: AddedToken] = [:], byContent: [String: AddedToken] = [:]
        for t in added { byId[t.id] = t; byContent[t.content] = t }
        addedById = byId; addedByContent = byContent
        let raw = added.filter { !$0.normalized }
        rawMatcher = AddedTokenMatcher(tokens: raw, patterns: raw.map { $0.scalars })
        let norm = added.filter { $0.normalized }
        let normalizerCopy = normalizer
        normalizedMatcher = AddedTokenMatcher(tokens: norm, patterns: norm.map { t in
            var nt = NormalizedText(original: t.scalars[...], byteOffsets: Array(repeating: 0, count: t.scalars.count)[...], originalStart: 0)
            normalizerCopy?.normalize(&nt)
            return nt.scalars
        })
        func hasByteFallback(_ d: Decoder?) -> Bool {
            switch d {
            case .byteFallback?: return true
            case .sequence(let ds)?: return ds.contains { hasByteFallback($0) }
            default: return false
            }
        }
        hasByteFallbackDecoder = hasByteFallback(decoder)
        vocabSize = max(model.idToToken.count, (added.map { $0.id }.max() ?? -1) + 1)
    }

    // MARK: - Vocabulary

    public func id(forToken token: String) -> Int? { addedByContent[token]?.id ?? model.id(forToken: token) }

    public func token(forId id: Int) -> String? {
        if let a = addedById[id] { return a.content }
        guard id >= 0, id < model.idToToken.count else { return nil }
        let t = model.idToToken[id]
        return t.isEmpty ? nil : t
    }

    /// Whether `id` is a special added token (skipped by `decode(skipSpecialTokens: true)`).
    public func isSpecial(id: Int) -> Bool { addedById[id]?.special ?? false }

    // MARK: - Encoding

    /// Encode raw UTF-8 bytes, rejecting invalid UTF-8 with the offset of the first bad byte.
    public func encode(bytes: [UInt8], addSpecialTokens: Bool = true) throws -> Encoding {
        try encode(validatedUTF8(bytes), addSpecialTokens: addSpecialTokens)
    }

    public func encode(_ text: String, addSpecialTokens: Bool = true) throws -> Encoding {
        // Scalars of the input with their byte offsets.
        var scalars: [Unicode.Scalar] = []
        var offsets: [Int] = []
        scalars.reserveCapacity(text.utf8.count); offsets.reserveCapacity(text.utf8.count)
        var o = 0
        for s in text.unicodeScalars { scalars.append(s); offsets.append(o); o += utf8Length(s) }

        var enc = Encoding()
        enc.ids.reserveCapacity(scalars.count / 3 + 4)
        var words: [NormalizedText] = []
        var bytes: [UInt8] = []
        var byteToScalar: [Int32] = []

        func emitAdded(_ t: AddedToken, _ r: Range<Int>) {
            enc.append(id: t.id, token: t.content, offsets: r, special: false)
        }
        func runModel(_ piece: NormalizedText) throws {
            words.removeAll(keepingCapacity: true)
            if piece.isEmpty { return }
            words.append(piece)
            preTokenizer?.preTokenize(&words)
            for w in words {
                bytes.removeAll(keepingCapacity: true); byteToScalar.removeAll(keepingCapacity: true)
                for (k, s) in w.scalars.enumerated() {
                    let before = bytes.count
                    appendUTF8(s, to: &bytes)
                    for _ in before..<bytes.count { byteToScalar.append(Int32(k)) }
                }
                for t in try model.tokenize(bytes) {
                    let a = Int(byteToScalar[Int(t.start)]), b = Int(byteToScalar[Int(t.end) - 1]) + 1
                    let id = Int(t.id)
                    enc.append(id: id, token: t.text ?? model.idToToken[id], offsets: w.originalRange(a, b), special: false)
                }
            }
        }

        for (r, tok) in rawMatcher.split(scalars) {
            if let tok {
                emitAdded(rawMatcher.tokens[tok], (r.isEmpty ? 0 : offsets[r.lowerBound])..<(r.isEmpty ? 0 : offsets[r.upperBound - 1] + utf8Length(scalars[r.upperBound - 1])))
                continue
            }
            var piece = NormalizedText(original: scalars[r], byteOffsets: offsets[r], originalStart: r.isEmpty ? 0 : offsets[r.lowerBound])
            normalizer?.normalize(&piece)
            if normalizedMatcher.isEmpty {
                try runModel(piece)
            } else {
                for (r2, tok2) in normalizedMatcher.split(piece.scalars) {
                    if let tok2 { emitAdded(normalizedMatcher.tokens[tok2], piece.originalRange(r2.lowerBound, r2.upperBound)) }
                    else { try runModel(r2.count == piece.count ? piece : piece.slice(r2.lowerBound, r2.upperBound)) }
                }
            }
        }
        postProcessor?.process(&enc, addSpecialTokens: addSpecialTokens)
        return enc
    }

    // MARK: - Decoding

    /// Decode ids to text. Throws `TokenizerError.unknownId` for ids outside the vocabulary
    /// (Hugging Face silently drops them; a serving system should not).
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = true) throws -> String {
        var tokens: [String] = []
        tokens.reserveCapacity(ids.count)
        for id in ids {
            if let a = addedById[id] {
                if skipSpecialTokens && a.special { continue }
                tokens.append(a.content)
            } else if let t = token(forId: id) {
                tokens.append(t)
            } else {
                throw TokenizerError.unknownId(id: id, vocabSize: vocabSize)
            }
        }
        if let decoder { return decoder.decode(tokens) }
        return tokens.joined(separator: " ")
    }

    /// Strictly validate UTF-8 bytes; `TokenizerError.invalidUTF8(offset:)` names the first bad byte.
    public static func string(fromUTF8 bytes: [UInt8]) throws -> String { try validatedUTF8(bytes) }

    /// `context`: ids already read before the first pushed one (a prompt, an answer so far);
    /// their text is not emitted, but the first new token is decoded in their company, as
    /// a full decode would (Metaspace's leading space, byte-level BPE's merged characters).
    public func makeStreamDecoder(skipSpecialTokens: Bool = true, context: [Int]) throws -> StreamDecoder {
        try StreamDecoder(tokenizer: self, skipSpecialTokens: skipSpecialTokens, context: context)
    }

    public func makeStreamDecoder(skipSpecialTokens: Bool = true) -> StreamDecoder {
        StreamDecoder(tokenizer: self, skipSpecialTokens: skipSpecialTokens)
    }
}

/// Incremental detokenization for streaming: push ids one at a time, get text as soon as it
/// is final. Text is held back while the decode of the pending window ends in U+FFFD (an
/// incomplete UTF-8 sequence from byte-level BPE or byte fallback) or adds nothing yet.
///
/// Same windowing as Hugging Face's `DecodeStream`: the window keeps the ids of the last
/// emitted chunk as context, so decoders that treat the first token specially (Metaspace,
/// Strip) see the same context in both decodes and the difference is exactly the new text.
/// The concatenation of all pushes plus `flush()` equals `decode(allIds)`.
public struct StreamDecoder {
    let tokenizer: Tokenizer
    let skipSpecialTokens: Bool
    private var ids: [Int] = []
    private var prefix: String = ""
    private var prefixIndex = 0

    /// How many context ids the window starts with: enough for any decoder's look-back.
    static let contextWindow = 6

    init(tokenizer: Tokenizer, skipSpecialTokens: Bool) {
        self.tokenizer = tokenizer; self.skipSpecialTokens = skipSpecialTokens
    }

    init(tokenizer: Tokenizer, skipSpecialTokens: Bool, context: [Int]) throws {
        self.tokenizer = tokenizer; self.skipSpecialTokens = skipSpecialTokens
        ids = Array(context.suffix(Self.contextWindow))
        prefix = ids.isEmpty ? "" : try tokenizer.decode(ids, skipSpecialTokens: skipSpecialTokens)
        prefixIndex = ids.count
    }

    /// True when every pushed id's text has been emitted (nothing held back).
    public var isClean: Bool { prefixIndex == ids.count }

    public mutating func push(_ id: Int) throws -> String {
        guard let token = tokenizer.token(forId: id) else { throw TokenizerError.unknownId(id: id, vocabSize: tokenizer.vocabSize) }
        ids.append(id)
        // With a ByteFallback decoder a run of <0xXX> tokens is decoded as a whole (one invalid
        // byte turns the whole run into U+FFFD), so text ending in byte tokens is not final yet.
        if tokenizer.hasByteFallbackDecoder, Decoder.byteToken(token) != nil { return "" }
        let s = try tokenizer.decode(ids, skipSpecialTokens: skipSpecialTokens)
        let su = s.utf8, pu = prefix.utf8
        guard su.count > pu.count, s.unicodeScalars.last != "\u{FFFD}", su.starts(with: pu) else { return "" }
        let new = String(decoding: Array(su)[pu.count...], as: UTF8.self)
        let newPrefixIndex = ids.count - prefixIndex
        ids.removeFirst(prefixIndex)
        prefix = try tokenizer.decode(ids, skipSpecialTokens: skipSpecialTokens)
        prefixIndex = newPrefixIndex
        return new
    }

    /// Everything still held back (incomplete sequences come out as U+FFFD, as in a full
    /// decode); the decoder is then empty and can be reused.
    public mutating func flush() throws -> String {
        defer { ids = []; prefix = ""; prefixIndex = 0 }
        guard !ids.isEmpty else { return "" }
        let s = try tokenizer.decode(ids, skipSpecialTokens: skipSpecialTokens)
        let su = s.utf8, pu = prefix.utf8
        guard su.count > pu.count, su.starts(with: pu) else { return "" }
        return String(decoding: Array(su)[pu.count...], as: UTF8.self)
    }
}

/// Strict UTF-8 validation (no overlongs, no surrogates, nothing above U+10FFFF).
func validatedUTF8(_ b: [UInt8]) throws -> String {
    var i = 0
    let n = b.count
    while i < n {
        let c = b[i]
        if c < 0x80 { i += 1; continue }
        var need = 0, lo: UInt8 = 0x80, hi: UInt8 = 0xBF
        switch c {
        case 0xC2...0xDF: need = 1
        case 0xE0: need = 2; lo = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: need = 2
        case 0xED: need = 2; hi = 0x9F
        case 0xF0: need = 3; lo = 0x90
        case 0xF1...0xF3: need = 3
        case 0xF4: need = 3; hi = 0x8F
        default: throw TokenizerError.invalidUTF8(offset: i)
        }
        for k in 1...need {
            guard i + k < n else { throw TokenizerError.invalidUTF8(offset: i) }
            let d = b[i + k]
            if k == 1 { guard d >= lo && d <= hi else { throw TokenizerError.invalidUTF8(offset: i) } }
            else { guard d >= 0x80 && d <= 0xBF else { throw TokenizerError.invalidUTF8(offset: i) } }
        }
        i += need + 1
    }
    return String(decoding: b, as: UTF8.self)
}
