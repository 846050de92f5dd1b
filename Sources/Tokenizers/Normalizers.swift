import Foundation

/// Normalizers: rewrite the text of a piece, keeping each scalar's original alignment.
enum Normalizer {
    case nfc, nfd, nfkc, nfkd
    case lowercase
    case strip(left: Bool, right: Bool)
    case replace(Pattern, [Unicode.Scalar])
    case prepend([Unicode.Scalar])
    case precompiled(PrecompiledCharsMap)
    case sequence([Normalizer])

    static func parse(_ j: JSONObject) throws -> Normalizer {
        let type = try j.string("type")
        switch type {
        case "NFC": return .nfc
        case "NFD": return .nfd
        case "NFKC": return .nfkc
        case "NFKD": return .nfkd
        case "Lowercase": return .lowercase
        case "Strip": return .strip(left: try j.bool("strip_left", default: true), right: try j.bool("strip_right", default: true))
        case "Replace": return .replace(try j.pattern("pattern"), Array(try j.string("content").unicodeScalars))
        case "Prepend": return .prepend(Array(try j.string("prepend").unicodeScalars))
        case "Precompiled":
            let b64 = try j.string("precompiled_charsmap")
            guard let data = Data(base64Encoded: b64) else { throw j.fail("precompiled_charsmap is not valid base64") }
            return .precompiled(try PrecompiledCharsMap(data: [UInt8](data), file: j.file))
        case "Sequence":
            return .sequence(try j.objects("normalizers").map(parse))
        default:
            throw TokenizerError.unsupportedComponent(section: "normalizer", type: type,
                hint: "supported: NFC, NFD, NFKC, NFKD, Lowercase, Strip, Replace, Prepend, Precompiled, Sequence")
        }
    }

    func normalize(_ t: inout NormalizedText) {
        switch self {
        case .nfc: Normalizer.unicodeNormalize(&t, form: .nfc)
        case .nfd: Normalizer.unicodeNormalize(&t, form: .nfd)
        case .nfkc: Normalizer.unicodeNormalize(&t, form: .nfkc)
        case .nfkd: Normalizer.unicodeNormalize(&t, form: .nfkd)
        case .lowercase: Normalizer.lowercase(&t)
        case .strip(let left, let right):
            var a = 0, b = t.count
            if left { while a < b && CharClass.isWhitespace(t.scalars[a]) { a += 1 } }
            if right { while b > a && CharClass.isWhitespace(t.scalars[b - 1]) { b -= 1 } }
            if a > 0 || b < t.count {
                let o = t.originalStart
                t = t.slice(a, b); t.originalStart = o
            }
        case .replace(let p, let content):
            t.replace(matches: p.matches(in: t.scalars), with: content)
        case .prepend(let p):
            t.prepend(p)
        case .precompiled(let m):
            m.normalize(&t)
        case .sequence(let ns):
            for n in ns { n.normalize(&t) }
        }
    }

    enum Form { case nfc, nfd, nfkc, nfkd }

    /// Unicode normalization. ASCII is invariant under all four forms, so pure-ASCII text (the
    /// common case) costs one scan. Otherwise the text is cut into segments that normalize
    /// independently (a boundary before every ASCII scalar that follows an ASCII scalar, and
    /// before starters that cannot compose backwards), each segment is normalized by Foundation,
    /// and alignment follows HF: unchanged trailing scalars keep theirs; otherwise first outputs
    /// replace inputs, extra outputs are inserted, missing outputs remove the remaining inputs.
    static func unicodeNormalize(_ t: inout NormalizedText, form: Form) {
        guard t.scalars.contains(where: { $0.value >= 0x80 }) else { return }
        var dest: [(Unicode.Scalar, Int)] = []
        dest.reserveCapacity(t.count + 8)
        var changed = false
        let s = t.scalars
        var i = 0
        while i < s.count {
            if s[i].value < 0x80 && (i + 1 == s.count || s[i + 1].value < 0x80) {
                dest.append((s[i], 0)); i += 1; continue
            }
            var j = i + 1
            while j < s.count && !isSegmentStart(s[j], previous: s[j - 1]) { j += 1 }
            let o: [Unicode.Scalar]
            if j == i + 1 {
                // A lone scalar normalizes the same way every time: one Foundation call per
                // distinct scalar, not per occurrence (31,000 × `ﬃ` is one lookup, 31,000 hits).
                o = SingleScalarForms.shared.normalize(s[i], form: form)
            } else {
                o = Array(Self.foundationNormalize(stringFromScalars(s[i..<j]), form: form).unicodeScalars)
            }
            if o.elementsEqual(s[i..<j]) {
                for k in i..<j { dest.append((s[k], 0)) }
            } else {
                changed = true
                // Scalars the normalization left alone at the end of the segment (combining
                // marks that did not compose) keep their own alignment, as in Hugging Face;
                // the rest is a replacement: "e\u{301}\u{302}" -> "é" (aligned to e) + U+0302.
                var k = 0
                while k < min(o.count, j - i) - 1 && o[o.count - 1 - k] == s[j - 1 - k] { k += 1 }
                appendReplacement(&dest, old: j - i - k, new: Array(o[..<(o.count - k)]))
                for c in o[(o.count - k)...] { dest.append((c, 0)) }
            }
            i = j
        }
        if changed { t.transform(dest) }
    }

    static func foundationNormalize(_ seg: String, form: Form) -> String {
        switch form {
        case .nfc: return seg.precomposedStringWithCanonicalMapping
        case .nfd: return seg.decomposedStringWithCanonicalMapping
        // Foundation's own NFKC leaves some compositions undone on Linux (halfwidth
        // ｶﾞ -> U+30AB U+3099 instead of U+30AC); NFKD then NFC is the definition and is right.
        case .nfkc: return seg.decomposedStringWithCompatibilityMapping.precomposedStringWithCanonicalMapping
        case .nfkd: return seg.decomposedStringWithCompatibilityMapping
        }
    }

    /// A scalar that starts a new normalization segment: ASCII, or a starter (ccc 0) that
    /// does not compose with what precedes it. Conservative: Hangul jamo vowels/trailers,
    /// halfwidth voicing marks and combining marks stay in the current segment.
    @inline(__always) static func isSegmentStart(_ c: Unicode.Scalar, previous: Unicode.Scalar) -> Bool {
        let v = c.value
        if v < 0x80 { return true }
        if c.properties.canonicalCombiningClass != .notReordered { return false }
        if (0x1160...0x11FF).contains(v) || v == 0xFF9E || v == 0xFF9F || v == 0x3099 || v == 0x309A { return false }
        switch c.properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark: return false
        default: return true
        }
    }

    /// HF `replace(transformations, old, new)` used by Precompiled and our segment rewrite:
    /// new scalars replace old ones one to one; extra new ones are insertions (change 1);
    /// if fewer, the last entry of `dest` (possibly an earlier scalar) absorbs the removal.
    static func appendReplacement(_ dest: inout [(Unicode.Scalar, Int)], old: Int, new: [Unicode.Scalar]) {
        for c in new { dest.append((c, 0)) }
        let diff = new.count - old
        if diff > 0 {
            var k = dest.count - 1
            for _ in 0..<diff { dest[k].1 = 1; k -= 1 }
        } else if diff < 0, !dest.isEmpty {
            dest[dest.count - 1].1 += diff
        }
    }

    /// Rust `str::to_lowercase` per character (one scalar may become several).
    static func lowercase(_ t: inout NormalizedText) {
        var needs = false
        for c in t.scalars {
            let v = c.value
            if v < 0x80 { if v >= 0x41 && v <= 0x5A { needs = true; break } }
            else if c.properties.changesWhenLowercased { needs = true; break }
        }
        guard needs else { return }
        var dest: [(Unicode.Scalar, Int)] = []
        dest.reserveCapacity(t.count)
        for c in t.scalars {
            let v = c.value
            if v < 0x80 {
                dest.append((v >= 0x41 && v <= 0x5A ? Unicode.Scalar(v + 32)! : c, 0))
            } else if c.properties.changesWhenLowercased {
                var first = true
                for l in c.properties.lowercaseMapping.unicodeScalars { dest.append((l, first ? 0 : 1)); first = false }
            } else {
                dest.append((c, 0))
            }
        }
        t.transform(dest)
    }
}

/// The four normalization forms of single scalars, remembered (bounded: at most `capacity`
/// scalars per form, then the table starts again; each entry is a few bytes).
final class SingleScalarForms: @unchecked Sendable {
    static let shared = SingleScalarForms()
    private var tables: [[UInt32: [Unicode.Scalar]]] = Array(repeating: [:], count: 4)
    private let lock = NSLock()
    let capacity = 16_384

    func normalize(_ c: Unicode.Scalar, form: Normalizer.Form) -> [Unicode.Scalar] {
        let t: Int
        switch form { case .nfc: t = 0; case .nfd: t = 1; case .nfkc: t = 2; case .nfkd: t = 3 }
        lock.lock()
        if let hit = tables[t][c.value] { lock.unlock(); return hit }
        lock.unlock()
        let out = Array(Normalizer.foundationNormalize(String(Character(c)), form: form).unicodeScalars)
        lock.lock()
        if tables[t].count >= capacity { tables[t].removeAll(keepingCapacity: true) }
        tables[t][c.value] = out
        lock.unlock()
        return out
    }
}
