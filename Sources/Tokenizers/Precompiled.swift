/// SentencePiece's `precompiled_charsmap` (T5's normalizer, nmt_nfkc): a darts-clone
/// double-array trie from UTF-8 input sequences to offsets in a pool of NUL-terminated
/// replacement strings. Layout: [u32 LE trie byte size][trie units u32 LE...][pool bytes].
///
/// Applied like Hugging Face's `Precompiled` normalizer, quirks included (they decide real
/// token ids): per extended grapheme cluster, a cluster shorter than 6 UTF-8 bytes is looked
/// up whole and replaced by the FIRST (shortest) trie hit; otherwise each scalar is looked up.
// Sendable: immutable after init.
final class PrecompiledCharsMap: @unchecked Sendable {
    private let units: [UInt32]
    private let pool: [UInt8]
    /// Replacement for each single ASCII byte (nil: unchanged), precomputed for the fast path.
    private let asciiMap: [[Unicode.Scalar]?]

    init(data: [UInt8], file: String) throws {
        func bad(_ why: String) -> TokenizerError { .malformed(file: file, detail: "normalizer Precompiled: precompiled_charsmap \(why)") }
        guard data.count >= 4 else { throw bad("is shorter than its 4-byte header") }
        let trieSize = Int(UInt32(data[0]) | UInt32(data[1]) << 8 | UInt32(data[2]) << 16 | UInt32(data[3]) << 24)
        guard trieSize % 4 == 0, trieSize > 0, 4 + trieSize <= data.count else {
            throw bad("declares a trie of \(trieSize) bytes but has \(data.count - 4) after the header")
        }
        var u = [UInt32](); u.reserveCapacity(trieSize / 4)
        var k = 4
        while k < 4 + trieSize {
            u.append(UInt32(data[k]) | UInt32(data[k + 1]) << 8 | UInt32(data[k + 2]) << 16 | UInt32(data[k + 3]) << 24)
            k += 4
        }
        let p = Array(data[(4 + trieSize)...])
        var m = [[Unicode.Scalar]?](repeating: nil, count: 128)
        for b in 0..<128 { m[b] = PrecompiledCharsMap.lookup(units: u, pool: p, key: [UInt8(b)]) }
        units = u
        pool = p
        asciiMap = m
    }

    /// darts-clone commonPrefixSearch, returning the first (shortest) hit's replacement.
    private static func lookup(units: [UInt32], pool: [UInt8], key: [UInt8]) -> [Unicode.Scalar]? {
        @inline(__always) func offset(_ u: UInt32) -> Int { Int((u >> 10) << ((u & (1 << 9)) >> 6)) }
        guard let root = units.first else { return nil }
        var pos = offset(root)
        for c in key {
            if c == 0 { break }
            pos ^= Int(c)
            guard pos < units.count else { return nil }
            let unit = units[pos]
            if unit & ((1 << 31) | 0xFF) != UInt32(c) { return nil }
            pos ^= offset(unit)
            if (unit >> 8) & 1 == 1 {
                guard pos < units.count else { return nil }
                let start = Int(units[pos] & ((1 << 31) - 1))
                guard start <= pool.count else { return nil }
                var end = start
                while end < pool.count && pool[end] != 0 { end += 1 }
                // The pool is UTF-8 by construction; decode defensively.
                return Array(String(decoding: pool[start..<end], as: UTF8.self).unicodeScalars)
            }
        }
        return nil
    }

    private func transform(_ scalars: ArraySlice<Unicode.Scalar>) -> [Unicode.Scalar]? {
        var key = [UInt8](); key.reserveCapacity(scalars.count * 3)
        for s in scalars { appendUTF8(s, to: &key) }
        return PrecompiledCharsMap.lookup(units: units, pool: pool, key: key)
    }

    func normalize(_ t: inout NormalizedText) {
        let s = t.scalars
        var dest: [(Unicode.Scalar, Int)] = []
        dest.reserveCapacity(s.count + 4)
        var modified = false

        func handleGrapheme(_ g: ArraySlice<Unicode.Scalar>) {
            let bytes = g.reduce(0) { $0 + utf8Length($1) }
            if bytes < 6, let norm = (g.count == 1 && g.first!.value < 128) ? asciiMap[Int(g.first!.value)] : transform(g) {
                modified = true
                Normalizer.appendReplacement(&dest, old: g.count, new: norm)
                return
            }
            for i in g.indices {
                let c = s[i]
                let norm = c.value < 128 ? asciiMap[Int(c.value)] : transform(s[i...i])
                if let norm {
                    modified = true
                    Normalizer.appendReplacement(&dest, old: 1, new: norm)
                } else {
                    dest.append((c, 0))
                }
            }
        }

        var i = 0
        while i < s.count {
            let v = s[i].value
            if v < 0x80 {
                if v == 0x0D && i + 1 < s.count && s[i + 1] == "\n" { handleGrapheme(s[i..<(i + 2)]); i += 2; continue }
                if i + 1 == s.count || s[i + 1].value < 0x80 { handleGrapheme(s[i...i]); i += 1; continue }
            }
            // A region ending where two ASCII scalars (not CR LF) meet: always a grapheme
            // boundary, so the region can be segmented on its own.
            var j = i + 1
            while j < s.count && !(s[j].value < 0x80 && s[j - 1].value < 0x80 && !(s[j - 1] == "\r" && s[j] == "\n")) { j += 1 }
            var k = i
            for ch in stringFromScalars(s[i..<j]) {
                let n = ch.unicodeScalars.count
                handleGrapheme(s[k..<(k + n)])
                k += n
            }
            i = j
        }
        if modified { t.transform(dest) }
    }
}
