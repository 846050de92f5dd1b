/// A piece of text being normalized and split, as Unicode scalars, each scalar remembering
/// the range of the ORIGINAL input (UTF-8 byte offsets, absolute) it came from.
///
/// This mirrors Hugging Face's `NormalizedString`, which keeps one alignment per normalized
/// byte; one per scalar is equivalent because every byte of a scalar shares its alignment,
/// and it keeps the inner loops on fixed-size values instead of String indices.
struct NormalizedText {
    var scalars: [Unicode.Scalar]
    var starts: [Int]
    var ends: [Int]
    /// Start of the original text this piece was built from (HF `offsets_original().0`):
    /// Metaspace's `prepend_scheme: first` asks whether it is 0.
    var originalStart: Int

    init(scalars: [Unicode.Scalar], starts: [Int], ends: [Int], originalStart: Int) {
        self.scalars = scalars; self.starts = starts; self.ends = ends; self.originalStart = originalStart
    }

    /// The original text itself (identity alignment); `base` = byte offset of `text` in the input.
    init(original scalars: ArraySlice<Unicode.Scalar>, byteOffsets: ArraySlice<Int>, originalStart: Int) {
        self.scalars = Array(scalars)
        self.starts = Array(byteOffsets)
        self.ends = []
        ends.reserveCapacity(scalars.count)
        for (s, o) in zip(scalars, byteOffsets) { ends.append(o + utf8Length(s)) }
        self.originalStart = originalStart
    }

    var isEmpty: Bool { scalars.isEmpty }
    var count: Int { scalars.count }

    /// A sub-range as a new piece (HF `NormalizedString::slice`).
    func slice(_ a: Int, _ b: Int) -> NormalizedText {
        NormalizedText(scalars: Array(scalars[a..<b]), starts: Array(starts[a..<b]), ends: Array(ends[a..<b]),
                       originalStart: a < b ? starts[a] : originalStart)
    }

    /// Original byte range covered by normalized scalars a..<b.
    func originalRange(_ a: Int, _ b: Int) -> Range<Int> {
        guard a < b, b <= count else {
            let p = a < count ? starts[a] : (count > 0 ? ends[count - 1] : originalStart)
            return p..<p
        }
        return starts[a]..<max(starts[a], ends[b - 1])
    }

    /// Apply HF-style changes. `dest` lists the new scalars with a change each:
    /// 0 = replaces the next old scalar, 1 = inserted (aligned like the previous old scalar),
    /// -n = replaces the next old scalar and removes the n after it.
    /// `initialOffset` old scalars are removed before the first one.
    mutating func transform(_ dest: [(Unicode.Scalar, Int)], initialOffset: Int = 0) {
        var newScalars = [Unicode.Scalar](); newScalars.reserveCapacity(dest.count)
        var newStarts = [Int](); newStarts.reserveCapacity(dest.count)
        var newEnds = [Int](); newEnds.reserveCapacity(dest.count)
        var oi = initialOffset
        let n = scalars.count
        for (c, change) in dest {
            var s: Int, e: Int
            if change > 0 {
                if oi > 0 && oi - 1 < n { s = starts[oi - 1]; e = ends[oi - 1] } else { s = originalStart; e = originalStart }
            } else {
                if oi < n { s = starts[oi]; e = ends[oi] }
                else if n > 0 { s = ends[n - 1]; e = ends[n - 1] } else { s = originalStart; e = originalStart }
                oi += 1
                if change < 0 { oi += -change }
            }
            newScalars.append(c); newStarts.append(s); newEnds.append(e)
        }
        scalars = newScalars; starts = newStarts; ends = newEnds
    }

    /// HF `NormalizedString::prepend`: the new scalars take the first scalar's alignment.
    mutating func prepend(_ p: [Unicode.Scalar]) {
        guard !scalars.isEmpty, !p.isEmpty else { return }
        let s = starts[0], e = ends[0]
        scalars.insert(contentsOf: p, at: 0)
        starts.insert(contentsOf: repeatElement(s, count: p.count), at: 0)
        ends.insert(contentsOf: repeatElement(e, count: p.count), at: 0)
    }

    /// Replace every match (non-overlapping, given as scalar ranges) by `content`: the new
    /// scalars take the alignment of the last matched scalar (HF `NormalizedString::replace`).
    mutating func replace(matches: [Range<Int>], with content: [Unicode.Scalar]) {
        guard !matches.isEmpty else { return }
        var ns = [Unicode.Scalar](), st = [Int](), en = [Int]()
        ns.reserveCapacity(scalars.count); st.reserveCapacity(scalars.count); en.reserveCapacity(scalars.count)
        var last = 0
        for m in matches {
            ns.append(contentsOf: scalars[last..<m.lowerBound])
            st.append(contentsOf: starts[last..<m.lowerBound])
            en.append(contentsOf: ends[last..<m.lowerBound])
            let a = m.upperBound - 1
            for c in content { ns.append(c); st.append(starts[a]); en.append(ends[a]) }
            last = m.upperBound
        }
        ns.append(contentsOf: scalars[last...]); st.append(contentsOf: starts[last...]); en.append(contentsOf: ends[last...])
        scalars = ns; starts = st; ends = en
    }

    /// Split by matches (HF `NormalizedString::split`): `matches` are sorted, non-overlapping
    /// scalar ranges; pieces are produced according to `behavior`; empty pieces are dropped.
    func split(matches: [Range<Int>], behavior: SplitBehavior, into out: inout [NormalizedText]) {
        if matches.isEmpty {
            if behavior == .removed || !isEmpty { if !isEmpty { out.append(self) } }
            return
        }
        // (range, isMatch) covering the whole text.
        var parts: [(Range<Int>, Bool)] = []
        var last = 0
        for m in matches {
            if last < m.lowerBound { parts.append((last..<m.lowerBound, false)) }
            parts.append((m, true))
            last = m.upperBound
        }
        if last < count { parts.append((last..<count, false)) }
        var ranges: [Range<Int>] = []
        switch behavior {
        case .removed:
            ranges = parts.filter { !$0.1 }.map { $0.0 }
        case .isolated:
            ranges = parts.map { $0.0 }
        case .mergedWithPrevious:
            var prevWasMatch = false
            for (r, isMatch) in parts {
                if isMatch && !prevWasMatch, let l = ranges.last { ranges[ranges.count - 1] = l.lowerBound..<r.upperBound }
                else { ranges.append(r) }
                prevWasMatch = isMatch
            }
        case .mergedWithNext:
            var pendingStart: Int? = nil
            var out2: [Range<Int>] = []
            for (r, isMatch) in parts {
                if isMatch {
                    if let p = pendingStart { out2.append(p..<r.lowerBound) }
                    pendingStart = r.lowerBound
                } else {
                    if let p = pendingStart { out2.append(p..<r.upperBound); pendingStart = nil }
                    else { out2.append(r) }
                }
            }
            if let p = pendingStart { out2.append(p..<count) }
            ranges = out2
        case .contiguous:
            var prevWasMatch = false
            for (r, isMatch) in parts {
                if isMatch && prevWasMatch, let l = ranges.last { ranges[ranges.count - 1] = l.lowerBound..<r.upperBound }
                else { ranges.append(r) }
                prevWasMatch = isMatch
            }
        }
        for r in ranges where !r.isEmpty { out.append(slice(r.lowerBound, r.upperBound)) }
    }
}

enum SplitBehavior: String {
    case removed = "Removed", isolated = "Isolated", mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext", contiguous = "Contiguous"
}

@inline(__always) func utf8Length(_ s: Unicode.Scalar) -> Int {
    let v = s.value
    return v < 0x80 ? 1 : v < 0x800 ? 2 : v < 0x10000 ? 3 : 4
}

@inline(__always) func appendUTF8(_ s: Unicode.Scalar, to bytes: inout [UInt8]) {
    let v = s.value
    if v < 0x80 { bytes.append(UInt8(v)) }
    else if v < 0x800 { bytes.append(UInt8(0xC0 | (v >> 6))); bytes.append(UInt8(0x80 | (v & 0x3F))) }
    else if v < 0x10000 {
        bytes.append(UInt8(0xE0 | (v >> 12))); bytes.append(UInt8(0x80 | ((v >> 6) & 0x3F))); bytes.append(UInt8(0x80 | (v & 0x3F)))
    } else {
        bytes.append(UInt8(0xF0 | (v >> 18))); bytes.append(UInt8(0x80 | ((v >> 12) & 0x3F)))
        bytes.append(UInt8(0x80 | ((v >> 6) & 0x3F))); bytes.append(UInt8(0x80 | (v & 0x3F)))
    }
}

func stringFromScalars<S: Sequence>(_ s: S) -> String where S.Element == Unicode.Scalar {
    var v = String.UnicodeScalarView()
    v.append(contentsOf: s)
    return String(v)
}

/// Character classes used by pre-tokenizers and normalizers (Rust `char` semantics).
enum CharClass {
    /// Rust `char::is_whitespace` = Unicode White_Space.
    @inline(__always) static func isWhitespace(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if v < 0x80 { return v == 0x20 || (v >= 0x09 && v <= 0x0D) }
        return s.properties.isWhitespace
    }
    /// Regex `\p{L}`.
    @inline(__always) static func isLetter(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if v < 0x80 { return (v | 0x20) >= 0x61 && (v | 0x20) <= 0x7A }
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }
    /// Regex `\p{N}` and Rust `char::is_numeric`.
    @inline(__always) static func isNumber(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if v < 0x80 { return v >= 0x30 && v <= 0x39 }
        switch s.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }
    /// Rust regex `\w`: Alphabetic, marks, decimal numbers, connector punctuation, join controls.
    @inline(__always) static func isWord(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if v < 0x80 { return ((v | 0x20) >= 0x61 && (v | 0x20) <= 0x7A) || (v >= 0x30 && v <= 0x39) || v == 0x5F }
        let p = s.properties
        if p.isAlphabetic || p.isJoinControl { return true }
        switch p.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }
    /// HF `is_punctuation`: ASCII punctuation or Unicode P* categories.
    @inline(__always) static func isPunctuation(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if v < 0x80 {
            return (v >= 0x21 && v <= 0x2F) || (v >= 0x3A && v <= 0x40) || (v >= 0x5B && v <= 0x60) || (v >= 0x7B && v <= 0x7E)
        }
        switch s.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation: return true
        default: return false
        }
    }
    /// Rust `char::is_alphanumeric` (single_word added tokens).
    static func isAlphanumeric(_ s: Unicode.Scalar) -> Bool { s.properties.isAlphabetic || isNumber(s) }
}
