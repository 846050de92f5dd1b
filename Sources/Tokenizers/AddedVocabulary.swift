/// A token added on top of the model (special tokens such as `</s>`, T5's `<extra_id_N>`,
/// NeoX's whitespace runs). Added tokens are matched in the text before the model runs.
struct AddedToken {
    let id: Int
    let content: String
    let scalars: [Unicode.Scalar]
    let singleWord: Bool
    let lstrip: Bool
    let rstrip: Bool
    let normalized: Bool
    let special: Bool
}

/// Leftmost-longest matching of a set of added tokens (what HF's Aho-Corasick tries do).
struct AddedTokenMatcher {
    /// Candidates by first scalar, longest first.
    private var byFirst: [Unicode.Scalar: [(pattern: [Unicode.Scalar], token: Int)]] = [:]
    /// ASCII first scalars, so most positions skip the dictionary lookup.
    private var asciiFirst = [Bool](repeating: false, count: 128)
    private var anyNonASCIIFirst = false
    let tokens: [AddedToken]
    var isEmpty: Bool { byFirst.isEmpty }

    /// `patterns[i]` is what to look for for `tokens[i]` (normalized content for normalized tokens).
    init(tokens: [AddedToken], patterns: [[Unicode.Scalar]]) {
        self.tokens = tokens
        for (i, p) in patterns.enumerated() where !p.isEmpty {
            byFirst[p[0], default: []].append((p, i))
        }
        for k in byFirst.keys {
            byFirst[k]!.sort { $0.pattern.count > $1.pattern.count }
            if k.value < 128 { asciiFirst[Int(k.value)] = true } else { anyNonASCIIFirst = true }
        }
    }

    /// Splits `s` into (range, added token index or nil), covering all of `s`, HF semantics
    /// (`AddedVocabulary::find_matches`: single_word, lstrip, rstrip).
    func split(_ s: [Unicode.Scalar]) -> [(Range<Int>, Int?)] {
        if byFirst.isEmpty || s.isEmpty { return [(0..<s.count, nil)] }
        var out: [(Range<Int>, Int?)] = []
        var startOffset = 0
        var i = 0
        let n = s.count
        while i < n {
            let v = s[i].value
            if v < 128 ? !asciiFirst[Int(v)] : !anyNonASCIIFirst { i += 1; continue }
            guard let cands = byFirst[s[i]] else { i += 1; continue }
            var found: (Int, Int)? = nil   // (length, token)
            for (p, t) in cands where i + p.count <= n {
                var ok = true
                for k in 1..<max(p.count, 1) where s[i + k] != p[k] { ok = false; break }
                if ok { found = (p.count, t); break }
            }
            guard let (len, t) = found else { i += 1; continue }
            var start = i, stop = i + len
            let tok = tokens[t]
            if tok.singleWord {
                let startSpace = start == 0 || !isWordChar(s[start - 1])
                let stopSpace = stop == n || !isWordChar(s[stop])
                if !startSpace || !stopSpace { i += 1; continue }
            }
            if tok.lstrip {
                var a = start
                // Not past the previous match: scanning further back is wasted (and quadratic
                // on a long whitespace run between many such tokens).
                while a > startOffset && CharClass.isWhitespace(s[a - 1]) { a -= 1 }
                start = max(a, startOffset)
            }
            if tok.rstrip {
                while stop < n && CharClass.isWhitespace(s[stop]) { stop += 1 }
            }
            if startOffset < start { out.append((startOffset..<start, nil)) }
            out.append((start..<stop, t))
            startOffset = stop
            i = max(stop, i + len)
        }
        if startOffset < n { out.append((startOffset..<n, nil)) }
        return out
    }

    private func isWordChar(_ c: Unicode.Scalar) -> Bool { CharClass.isAlphanumeric(c) || c == "_" }
}
