/// Pre-tokenizers: split a normalized piece into words the model encodes separately.
enum PreTokenizer {
    case metaspace(replacement: Unicode.Scalar, prependScheme: PrependScheme, split: Bool)
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case whitespace
    case whitespaceSplit
    case split(Pattern, SplitBehavior, invert: Bool)
    case punctuation(SplitBehavior)
    case digits(individual: Bool)
    case sequence([PreTokenizer])

    enum PrependScheme: String { case always, first, never }

    static func parse(_ j: JSONObject) throws -> PreTokenizer {
        let type = try j.string("type")
        switch type {
        case "Metaspace":
            let r = try j.string("replacement").unicodeScalars
            guard r.count == 1, let rep = r.first else { throw j.fail("Metaspace replacement must be one character") }
            var scheme = PrependScheme.always
            if let s = try j.optString("prepend_scheme") {
                guard let p = PrependScheme(rawValue: s) else {
                    throw TokenizerError.unsupportedOption(section: "pre_tokenizer Metaspace", option: "prepend_scheme", value: s)
                }
                scheme = p
            } else if j.has("add_prefix_space") {
                scheme = try j.bool("add_prefix_space", default: true) ? .always : .never
            }
            return .metaspace(replacement: rep, prependScheme: scheme, split: try j.bool("split", default: true))
        case "ByteLevel":
            return .byteLevel(addPrefixSpace: try j.bool("add_prefix_space", default: true), useRegex: try j.bool("use_regex", default: true))
        case "Whitespace": return .whitespace
        case "WhitespaceSplit": return .whitespaceSplit
        case "Split":
            return .split(try j.pattern("pattern"), try behavior(j), invert: try j.bool("invert", default: false))
        case "Punctuation":
            return .punctuation(j.has("behavior") ? try behavior(j) : .isolated)
        case "Digits":
            return .digits(individual: try j.bool("individual_digits", default: false))
        case "Sequence":
            return .sequence(try j.objects("pretokenizers").map(parse))
        default:
            throw TokenizerError.unsupportedComponent(section: "pre_tokenizer", type: type,
                hint: "supported: Metaspace, ByteLevel, Whitespace, WhitespaceSplit, Split, Punctuation, Digits, Sequence")
        }
    }

    private static func behavior(_ j: JSONObject) throws -> SplitBehavior {
        let b = try j.string("behavior")
        guard let v = SplitBehavior(rawValue: b) else {
            throw TokenizerError.unsupportedOption(section: "pre_tokenizer \(try j.string("type"))", option: "behavior", value: b)
        }
        return v
    }

    /// Split every piece of `pieces` in place.
    func preTokenize(_ pieces: inout [NormalizedText]) {
        if case .sequence(let ps) = self {
            for p in ps { p.preTokenize(&pieces) }
            return
        }
        var out: [NormalizedText] = []
        out.reserveCapacity(pieces.count * 2)
        for piece in pieces { apply(piece, into: &out) }
        pieces = out
    }

    private func apply(_ pieceIn: NormalizedText, into out: inout [NormalizedText]) {
        var piece = pieceIn
        switch self {
        case .metaspace(let rep, let scheme, let split):
            var any = false
            for i in 0..<piece.count where piece.scalars[i] == " " { piece.scalars[i] = rep; any = true }
            _ = any
            switch scheme {
            case .always: if piece.scalars.first != rep { piece.prepend([rep]) }
            // HF checks `offsets_original().0 == 0`, derived from the alignments: after Strip
            // removed leading spaces the piece no longer starts at 0.
            case .first: if piece.scalars.first != rep && piece.starts.first == 0 { piece.prepend([rep]) }
            case .never: break
            }
            if split {
                var m: [Range<Int>] = []
                for i in 0..<piece.count where piece.scalars[i] == rep { m.append(i..<(i + 1)) }
                piece.split(matches: m, behavior: .mergedWithNext, into: &out)
            } else if !piece.isEmpty {
                out.append(piece)
            }
        case .byteLevel(let addPrefixSpace, let useRegex):
            if addPrefixSpace && piece.scalars.first != " " { piece.prepend([" "]) }
            var words: [NormalizedText] = []
            if useRegex { piece.split(matches: ByteLevel.gpt2Matches(piece.scalars), behavior: .isolated, into: &words) }
            else if !piece.isEmpty { words.append(piece) }
            for var w in words { ByteLevel.mapToBytes(&w); out.append(w) }
        case .whitespace:
            // \w+|[^\w\s]+ : the matches are the words, the rest is removed.
            var m: [Range<Int>] = []
            let s = piece.scalars
            var i = 0
            while i < s.count {
                if CharClass.isWhitespace(s[i]) { i += 1; continue }
                let word = CharClass.isWord(s[i])
                var j = i + 1
                while j < s.count && !CharClass.isWhitespace(s[j]) && CharClass.isWord(s[j]) == word { j += 1 }
                m.append(i..<j); i = j
            }
            piece.split(matches: invert(m, count: s.count), behavior: .removed, into: &out)
        case .whitespaceSplit:
            var m: [Range<Int>] = []
            for i in 0..<piece.count where CharClass.isWhitespace(piece.scalars[i]) { m.append(i..<(i + 1)) }
            piece.split(matches: m, behavior: .removed, into: &out)
        case .split(let pattern, let behavior, let inv):
            let m = pattern.matches(in: piece.scalars)
            piece.split(matches: inv ? invert(m, count: piece.count) : m, behavior: behavior, into: &out)
        case .punctuation(let behavior):
            var m: [Range<Int>] = []
            for i in 0..<piece.count where CharClass.isPunctuation(piece.scalars[i]) { m.append(i..<(i + 1)) }
            piece.split(matches: m, behavior: behavior, into: &out)
        case .digits(let individual):
            var m: [Range<Int>] = []
            for i in 0..<piece.count where CharClass.isNumber(piece.scalars[i]) { m.append(i..<(i + 1)) }
            piece.split(matches: m, behavior: individual ? .isolated : .contiguous, into: &out)
        case .sequence:
            var ps = [piece]; preTokenize(&ps); out.append(contentsOf: ps)
        }
    }

    /// The complement of sorted, non-overlapping ranges in 0..<count.
    private func invert(_ m: [Range<Int>], count: Int) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var last = 0
        for r in m {
            if last < r.lowerBound { out.append(last..<r.lowerBound) }
            last = r.upperBound
        }
        if last < count { out.append(last..<count) }
        return out
    }
}

/// GPT-2's byte-level alphabet and its word-splitting regex.
enum ByteLevel {
    /// bytes_to_unicode: printable bytes map to themselves, the others to U+0100 onwards.
    static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var n: UInt32 = 0
        for b in 0..<256 {
            let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
            if printable { table[b] = Unicode.Scalar(UInt32(b))! } else { table[b] = Unicode.Scalar(256 + n)!; n += 1 }
        }
        return table
    }()
    static let scalarToByte: [UInt32: UInt8] = {
        var d: [UInt32: UInt8] = [:]
        for (b, s) in byteToScalar.enumerated() { d[s.value] = UInt8(b) }
        return d
    }()

    /// Replace each scalar by the scalars of its UTF-8 bytes (first replaces, rest inserted).
    static func mapToBytes(_ w: inout NormalizedText) {
        var dest: [(Unicode.Scalar, Int)] = []
        dest.reserveCapacity(w.count * 2)
        var bytes: [UInt8] = []
        for c in w.scalars {
            bytes.removeAll(keepingCapacity: true)
            appendUTF8(c, to: &bytes)
            for (k, b) in bytes.enumerated() { dest.append((byteToScalar[Int(b)], k == 0 ? 0 : 1)) }
        }
        w.transform(dest)
    }

    /// Matches of `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`,
    /// hand-compiled (this is the hot path of every GPT-2-style tokenizer).
    static func gpt2Matches(_ s: [Unicode.Scalar]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        out.reserveCapacity(s.count / 3 + 1)
        let n = s.count
        var i = 0
        @inline(__always) func isOther(_ c: Unicode.Scalar) -> Bool {
            !CharClass.isWhitespace(c) && !CharClass.isLetter(c) && !CharClass.isNumber(c)
        }
        while i < n {
            let c = s[i]
            // Contractions.
            if c == "'" && i + 1 < n {
                let d = s[i + 1]
                if d == "s" || d == "t" || d == "m" || d == "d" { out.append(i..<(i + 2)); i += 2; continue }
                if i + 2 < n {
                    let e = s[i + 2]
                    if (d == "r" && e == "e") || (d == "v" && e == "e") || (d == "l" && e == "l") { out.append(i..<(i + 3)); i += 3; continue }
                }
            }
            let j = (c == " " && i + 1 < n) ? i + 1 : i
            let cj = s[j]
            if j < n && (j > i || c != " ") {
                if CharClass.isLetter(cj) {
                    var k = j + 1
                    while k < n && CharClass.isLetter(s[k]) { k += 1 }
                    out.append(i..<k); i = k; continue
                }
                if CharClass.isNumber(cj) {
                    var k = j + 1
                    while k < n && CharClass.isNumber(s[k]) { k += 1 }
                    out.append(i..<k); i = k; continue
                }
                if isOther(cj) {
                    var k = j + 1
                    while k < n && isOther(s[k]) { k += 1 }
                    out.append(i..<k); i = k; continue
                }
            }
            if CharClass.isWhitespace(c) {
                var k = i + 1
                while k < n && CharClass.isWhitespace(s[k]) { k += 1 }
                if k < n && k - 1 > i { out.append(i..<(k - 1)); i = k - 1; continue }
                out.append(i..<k); i = k; continue
            }
            // Unreachable in practice (every scalar is L, N, \s or other); keep progress.
            out.append(i..<(i + 1)); i += 1
        }
        return out
    }
}
