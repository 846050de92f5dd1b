import Foundation

/// A Replace/Split pattern: a literal string or a regular expression.
enum Pattern {
    case literal([Unicode.Scalar])
    case regex(RegexPattern)

    /// Non-overlapping matches, leftmost first, as scalar ranges.
    func matches(in s: [Unicode.Scalar]) -> [Range<Int>] {
        switch self {
        case .literal(let p):
            guard !p.isEmpty, p.count <= s.count else { return [] }
            var out: [Range<Int>] = []
            var i = 0
            let first = p[0]
            while i + p.count <= s.count {
                if s[i] == first {
                    var ok = true
                    for k in 1..<p.count where s[i + k] != p[k] { ok = false; break }
                    if ok { out.append(i..<(i + p.count)); i += p.count; continue }
                }
                i += 1
            }
            return out
        case .regex(let r):
            return r.matches(in: s)
        }
    }
}

/// A regular expression (Hugging Face uses Oniguruma; we use ICU through NSRegularExpression,
/// which agrees on the patterns tokenizer.json files use). Patterns of the form `X{n,}` / `X+`
/// with a literal X (T5's `" {2,}"`) take a fast scalar path: they run on every encode.
// Sendable: immutable after init; NSRegularExpression is documented thread-safe.
final class RegexPattern: @unchecked Sendable {
    let source: String
    private let regex: NSRegularExpression
    private let run: (scalar: Unicode.Scalar, min: Int)?

    init(_ source: String, file: String, path: String) throws {
        self.source = source
        do { regex = try NSRegularExpression(pattern: source, options: []) } catch {
            throw TokenizerError.malformed(file: file, detail: "\(path): invalid regular expression \(source.debugDescription): \(error)")
        }
        run = RegexPattern.literalRun(source)
    }

    private static func literalRun(_ p: String) -> (Unicode.Scalar, Int)? {
        let u = Array(p.unicodeScalars)
        guard let c = u.first, !"\\.^$|?*+()[]{}".unicodeScalars.contains(c) else { return nil }
        let rest = String(String.UnicodeScalarView(u.dropFirst()))
        if rest == "+" { return (c, 1) }
        if rest.hasPrefix("{"), rest.hasSuffix(",}"), let n = Int(rest.dropFirst().dropLast(2)), n >= 1 { return (c, n) }
        return nil
    }

    func matches(in s: [Unicode.Scalar]) -> [Range<Int>] {
        if let (c, minCount) = run {
            var out: [Range<Int>] = []
            var i = 0
            while i < s.count {
                if s[i] == c {
                    var j = i + 1
                    while j < s.count && s[j] == c { j += 1 }
                    if j - i >= minCount { out.append(i..<j) }
                    i = j
                } else { i += 1 }
            }
            return out
        }
        let str = stringFromScalars(s)
        // UTF-16 offset -> scalar index.
        var u16ToScalar = [Int](); u16ToScalar.reserveCapacity(s.count + 1)
        for (i, c) in s.enumerated() {
            u16ToScalar.append(i)
            if c.value >= 0x10000 { u16ToScalar.append(i) }
        }
        u16ToScalar.append(s.count)
        var out: [Range<Int>] = []
        for m in regex.matches(in: str, options: [], range: NSRange(location: 0, length: (str as NSString).length)) {
            let a = u16ToScalar[m.range.location], b = u16ToScalar[m.range.location + m.range.length]
            if a < b { out.append(a..<b) }
        }
        return out
    }
}
