import Foundation

/// One token produced by a model for one word: its id and its UTF-8 byte range in the word.
/// `text` is set only when the token's string is not the vocabulary entry (Unigram's fused
/// unknown pieces keep the text they cover, as Hugging Face does).
struct ModelToken {
    var id: Int32
    var start: Int32
    var end: Int32
    var text: String?
}

protocol TokenModel: AnyObject, Sendable {
    var idToToken: [String] { get }
    func id(forToken token: String) -> Int?
    /// Tokens of one pre-tokenized word, given as UTF-8 bytes.
    func tokenize(_ word: [UInt8]) throws -> [ModelToken]
}

/// The exact binary64 value of a JSON number. Foundation on Linux parses long decimals into
/// NSDecimalNumber whose `doubleValue` can be 1 ulp off; Unigram scores are summed along
/// lattice paths and near-ties decide tokens, so re-parse the decimal text (as Rust's serde does).
func exactDouble(_ n: NSNumber) -> Double {
    if n is NSDecimalNumber, let d = Double(n.stringValue) { return d }
    return n.doubleValue
}

/// A word -> tokens cache shared by all threads (the tokenizer is immutable otherwise).
/// Words repeat heavily in text, so most words skip the model entirely.
///
/// Bounded in bytes, whatever the input: words longer than `maxWordBytes` are not cached
/// (Hugging Face skips words over 256 characters too), and when the current generation
/// reaches `maxBytes / 2` the previous one is dropped and the current one becomes it; a
/// lookup that hits the previous generation moves the word back. Words in use survive,
/// memory stays under `maxBytes`, and each operation is O(word length).
// Sendable: every operation holds `lock`.
final class WordCache: @unchecked Sendable {
    private var current: [[UInt8]: [ModelToken]] = [:]
    private var previous: [[UInt8]: [ModelToken]] = [:]
    private var currentBytes = 0
    private let lock = NSLock()
    let maxBytes: Int
    let maxWordBytes: Int

    init(maxBytes: Int = 8 << 20, maxWordBytes: Int = 256) {
        self.maxBytes = maxBytes; self.maxWordBytes = maxWordBytes
    }

    /// What one entry costs: the key, the tokens, and the dictionary's own overhead.
    static func cost(_ k: [UInt8], _ v: [ModelToken]) -> Int {
        64 + k.count + v.count * MemoryLayout<ModelToken>.stride
    }

    var bytes: Int { lock.lock(); defer { lock.unlock() }; return currentBytes }

    func get(_ k: [UInt8]) -> [ModelToken]? {
        guard k.count <= maxWordBytes else { return nil }
        lock.lock(); defer { lock.unlock() }
        if let v = current[k] { return v }
        guard let v = previous[k] else { return nil }
        insertLocked(k, v)
        return v
    }

    func put(_ k: [UInt8], _ v: [ModelToken]) {
        guard k.count <= maxWordBytes else { return }
        lock.lock(); defer { lock.unlock() }
        if current[k] == nil { insertLocked(k, v) }
    }

    private func insertLocked(_ k: [UInt8], _ v: [ModelToken]) {
        let cost = Self.cost(k, v)
        if currentBytes + cost > maxBytes / 2 {
            previous = current
            current = [:]
            currentBytes = 0
        }
        current[k] = v
        currentBytes += cost
    }
}

/// A byte trie over the vocabulary (Unigram's common-prefix search).
struct ByteTrie {
    // Node children: dictionary keyed by node << 8 | byte; root children in a flat table.
    private var rootChildren = [Int32](repeating: -1, count: 256)
    private var children: [Int: Int32] = [:]
    private(set) var value: [Int32] = [-1]   // token id ending at node, -1 if none

    mutating func insert(_ bytes: [UInt8], id: Int32) {
        guard !bytes.isEmpty else { return }
        var node: Int32
        if rootChildren[Int(bytes[0])] >= 0 { node = rootChildren[Int(bytes[0])] }
        else { node = Int32(value.count); value.append(-1); rootChildren[Int(bytes[0])] = node }
        for b in bytes.dropFirst() {
            let key = Int(node) << 8 | Int(b)
            if let c = children[key] { node = c }
            else { let c = Int32(value.count); value.append(-1); children[key] = c; node = c }
        }
        value[Int(node)] = id
    }

    /// Calls `hit(id, length)` for every vocabulary entry that is a prefix of bytes[from...].
    @inline(__always) func prefixes(_ bytes: UnsafeBufferPointer<UInt8>, from: Int, _ hit: (Int32, Int) -> Void) {
        var node = rootChildren[Int(bytes[from])]
        guard node >= 0 else { return }
        var k = from + 1
        while true {
            let v = value[Int(node)]
            if v >= 0 { hit(v, k - from) }
            guard k < bytes.count, let c = children[Int(node) << 8 | Int(bytes[k])] else { return }
            node = c; k += 1
        }
    }
}

/// SentencePiece Unigram: Viterbi over the lattice of vocabulary pieces (scores are log
/// probabilities), unknown characters scored min_score - 10 and fused, optional byte fallback.
// Sendable: immutable after init (the word cache is locked).
final class UnigramModel: TokenModel, @unchecked Sendable {
    let idToToken: [String]
    let scores: [Double]
    let tokenToId: [String: Int]
    let unkId: Int?
    let byteFallback: Bool
    private let trie: ByteTrie
    private let unkScore: Double
    private let byteIds: [Int32]?   // <0xXX> ids when byte fallback is on and all 256 exist
    private let cache = WordCache()

    init(_ j: JSONObject) throws {
        let vocab = try j.array("vocab")
        var tokens: [String] = [], scores: [Double] = [], map: [String: Int] = [:]
        tokens.reserveCapacity(vocab.count); scores.reserveCapacity(vocab.count)
        var trie = ByteTrie()
        for (i, e) in vocab.enumerated() {
            guard let pair = e as? [Any], pair.count == 2, let t = pair[0] as? String, let s = pair[1] as? NSNumber else {
                throw j.fail("vocab[\(i)] must be [piece, score]")
            }
            tokens.append(t); scores.append(exactDouble(s))
            if map[t] == nil { map[t] = i }
            trie.insert(Array(t.utf8), id: Int32(i))
        }
        idToToken = tokens; self.scores = scores; tokenToId = map; self.trie = trie
        unkId = j.has("unk_id") ? try j.int("unk_id") : nil
        if let u = unkId, u < 0 || u >= tokens.count { throw j.fail("unk_id \(u) is outside the vocabulary (\(tokens.count) pieces)") }
        byteFallback = try j.bool("byte_fallback", default: false)
        unkScore = (scores.min() ?? 0) - 10.0
        if byteFallback {
            var ids: [Int32] = []
            for b in 0..<256 {
                guard let id = map[String(format: "<0x%02X>", b)] else { break }
                ids.append(Int32(id))
            }
            byteIds = ids.count == 256 ? ids : nil
        } else { byteIds = nil }
    }

    func id(forToken token: String) -> Int? { tokenToId[token] }

    func tokenize(_ word: [UInt8]) throws -> [ModelToken] {
        if word.isEmpty { return [] }
        if let c = cache.get(word) { return c }
        let r = try viterbi(word)
        cache.put(word, r)
        return r
    }

    private func viterbi(_ word: [UInt8]) throws -> [ModelToken] {
        let n = word.count
        var bestScore = [Double](repeating: 0, count: n + 1)
        var bestStart = [Int](repeating: -1, count: n + 1)
        var bestId = [Int32](repeating: -1, count: n + 1)
        try word.withUnsafeBufferPointer { w in
            var start = 0
            while start < n {
                let here = bestScore[start]
                let b = w[start]
                let mblen = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4
                var hasSingle = false
                trie.prefixes(w, from: start) { id, len in
                    let end = start + len
                    let cand = scores[Int(id)] + here
                    if bestStart[end] < 0 || cand > bestScore[end] {
                        bestScore[end] = cand; bestStart[end] = start; bestId[end] = id
                    }
                    if len == mblen { hasSingle = true }
                }
                if !hasSingle {
                    guard let unk = unkId else {
                        throw TokenizerError.cannotEncode(detail: "Unigram model has no unk_id and no piece for byte \(start) of a word")
                    }
                    let end = min(start + mblen, n)
                    let cand = unkScore + here
                    if bestStart[end] < 0 || cand > bestScore[end] {
                        bestScore[end] = cand; bestStart[end] = start; bestId[end] = Int32(unk)
                    }
                }
                start += mblen
            }
        }
        // Backtrack; consecutive unknown pieces fuse into one.
        var rev: [ModelToken] = []
        var end = n
        let unk = unkId.map(Int32.init) ?? -2
        var unkEnd = -1
        while end > 0 {
            let s = bestStart[end]
            if s < 0 { throw TokenizerError.cannotEncode(detail: "Unigram lattice has no path") }
            if bestId[end] == unk {
                if unkEnd < 0 { unkEnd = end }
            } else {
                if unkEnd >= 0 { rev.append(ModelToken(id: unk, start: Int32(end), end: Int32(unkEnd), text: nil)); unkEnd = -1 }
                rev.append(ModelToken(id: bestId[end], start: Int32(s), end: Int32(end), text: nil))
            }
            end = s
        }
        if unkEnd >= 0 { rev.append(ModelToken(id: unk, start: 0, end: Int32(unkEnd), text: nil)) }
        var out: [ModelToken] = []
        out.reserveCapacity(rev.count)
        for var t in rev.reversed() {
            if t.id == unk {
                let piece = word[Int(t.start)..<Int(t.end)]
                let text = String(decoding: piece, as: UTF8.self)
                // The fused piece may be a vocabulary entry after all (HF looks it up again).
                if let id = tokenToId[text] { t.id = Int32(id); out.append(t); continue }
                if let byteIds {
                    for b in piece { out.append(ModelToken(id: byteIds[Int(b)], start: t.start, end: t.end, text: nil)) }
                    continue
                }
                t.text = text
            }
            out.append(t)
        }
        return out
    }
}

/// Byte-pair encoding: start from characters (or bytes via byte fallback / unk), apply the
/// lowest-ranked merge first (leftmost among equals) until none applies.
// Sendable: immutable after init (the word cache is locked).
final class BPEModel: TokenModel, @unchecked Sendable {
    let idToToken: [String]
    let tokenToId: [String: Int]
    private let merges: [UInt64: UInt64]        // (left << 32 | right) -> (rank << 32 | newId)
    private let unkId: Int32?
    private let fuseUnk: Bool
    private let byteFallback: Bool
    private let ignoreMerges: Bool
    private let prefix: String?
    private let suffix: String?
    private let byteIds: [Int32?]
    private let cache = WordCache()

    init(_ j: JSONObject) throws {
        if j.has("dropout") {
            let d = (j.dict["dropout"] as? NSNumber)?.doubleValue ?? 0
            if d != 0 { throw TokenizerError.unsupportedOption(section: "model BPE", option: "dropout", value: "\(d)") }
        }
        let vocab = try j.object("vocab").dict
        var maxId = -1
        var pairs: [(String, Int)] = []
        pairs.reserveCapacity(vocab.count)
        for (k, v) in vocab {
            guard let n = v as? NSNumber else { throw j.fail("vocab[\(k.debugDescription)] must be an integer id") }
            let id = n.intValue
            guard id >= 0 else { throw j.fail("vocab[\(k.debugDescription)] has a negative id") }
            pairs.append((k, id)); maxId = max(maxId, id)
        }
        guard maxId < 4 * pairs.count + 1024 else { throw j.fail("vocab ids are sparse (max id \(maxId) for \(pairs.count) entries)") }
        var tokens = [String](repeating: "", count: maxId + 1)
        var map: [String: Int] = [:]
        map.reserveCapacity(pairs.count)
        for (k, id) in pairs { tokens[id] = k; map[k] = id }
        idToToken = tokens; tokenToId = map
        var m: [UInt64: UInt64] = [:]
        let rawMerges = try j.array("merges")
        m.reserveCapacity(rawMerges.count)
        let contPrefix = try j.optString("continuing_subword_prefix")
        for (rank, e) in rawMerges.enumerated() {
            let a: String, b: String
            if let s = e as? String {
                let parts = s.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw j.fail("merges[\(rank)] \(s.debugDescription) is not \"left right\"") }
                a = String(parts[0]); b = String(parts[1])
            } else if let p = e as? [String], p.count == 2 {
                a = p[0]; b = p[1]
            } else { throw j.fail("merges[\(rank)] must be \"left right\" or [left, right]") }
            guard let ia = map[a], let ib = map[b] else { throw j.fail("merges[\(rank)] uses \(a.debugDescription) or \(b.debugDescription), not in the vocabulary") }
            let merged = contPrefix.map { b.hasPrefix($0) ? a + b.dropFirst($0.count) : a + b } ?? (a + b)
            guard let inew = map[merged] else { throw j.fail("merges[\(rank)] produces \(merged.debugDescription), not in the vocabulary") }
            // A pair listed twice takes its last rank, as Hugging Face's map does (later
            // entries overwrite earlier ones).
            m[UInt64(ia) << 32 | UInt64(ib)] = UInt64(rank) << 32 | UInt64(inew)
        }
        merges = m
        if let u = try j.optString("unk_token") {
            guard let id = map[u] else { throw j.fail("unk_token \(u.debugDescription) is not in the vocabulary") }
            unkId = Int32(id)
        } else { unkId = nil }
        fuseUnk = try j.bool("fuse_unk", default: false)
        byteFallback = try j.bool("byte_fallback", default: false)
        ignoreMerges = try j.bool("ignore_merges", default: false)
        prefix = contPrefix
        suffix = try j.optString("end_of_word_suffix")
        byteIds = (0..<256).map { b in map[String(format: "<0x%02X>", b)].map(Int32.init) }
    }

    func id(forToken token: String) -> Int? { tokenToId[token] }

    func tokenize(_ word: [UInt8]) throws -> [ModelToken] {
        if word.isEmpty { return [] }
        if let c = cache.get(word) { return c }
        let r = encodeWord(word)
        cache.put(word, r)
        return r
    }

    private struct Symbol { var id: Int32; var start: Int32; var end: Int32 }

    private func encodeWord(_ word: [UInt8]) -> [ModelToken] {
        if ignoreMerges, let id = tokenToId[String(decoding: word, as: UTF8.self)] {
            return [ModelToken(id: Int32(id), start: 0, end: Int32(word.count), text: nil)]
        }
        // Initial symbols: one per character.
        var syms: [Symbol] = []
        syms.reserveCapacity(word.count)
        var pendingUnk: Symbol? = nil
        var i = 0
        let n = word.count
        while i < n {
            let b = word[i]
            let len = min(b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4, n - i)
            var s = String(decoding: word[i..<(i + len)], as: UTF8.self)
            if i > 0, let p = prefix { s = p + s }
            if i + len == n, let x = suffix { s += x }
            if let id = tokenToId[s] {
                if let u = pendingUnk { syms.append(u); pendingUnk = nil }
                syms.append(Symbol(id: Int32(id), start: Int32(i), end: Int32(i + len)))
            } else {
                var handled = false
                if byteFallback {
                    let bytes = Array(s.utf8)
                    if bytes.allSatisfy({ byteIds[Int($0)] != nil }) {
                        // HF gives each fallback byte a length of 1 byte.
                        var k = i
                        for bb in bytes { syms.append(Symbol(id: byteIds[Int(bb)]!, start: Int32(k), end: Int32(k + 1))); k += 1 }
                        handled = true
                    }
                }
                if !handled, let unk = unkId {
                    if let u = pendingUnk {
                        if fuseUnk { pendingUnk = Symbol(id: u.id, start: u.start, end: Int32(i + len)) }
                        else { syms.append(u); pendingUnk = Symbol(id: unk, start: Int32(i), end: Int32(i + len)) }
                    } else {
                        pendingUnk = Symbol(id: unk, start: Int32(i), end: Int32(i + len))
                    }
                }
            }
            i += len
        }
        if let u = pendingUnk { syms.append(u) }
        return merge(syms)
    }

    /// The merge loop: lowest rank first, leftmost among equal ranks, until none applies.
    /// As Hugging Face does it (word.rs), in O(n log n): the symbols form a linked list and the
    /// candidate pairs wait in a min-heap keyed by (rank, position); an entry whose pair has
    /// changed since it was pushed is skipped when popped. A merge's rank identifies its pair,
    /// so "the pair at this position still has this rank" is the whole staleness check.
    /// (Re-scanning the word for the best pair after each merge, as before, is O(n²): a word
    /// of 93,000 letters took the router's thread for over a minute.)
    private func merge(_ initial: [Symbol]) -> [ModelToken] {
        var syms = initial
        let n = syms.count
        guard n > 1 else { return syms.map { ModelToken(id: $0.id, start: $0.start, end: $0.end, text: nil) } }
        var next = [Int32](unsafeUninitializedCapacity: n) { b, c in for i in 0..<n { b[i] = Int32(i + 1) }; c = n }
        var prev = [Int32](unsafeUninitializedCapacity: n) { b, c in for i in 0..<n { b[i] = Int32(i - 1) }; c = n }
        next[n - 1] = -1
        var alive = [Bool](repeating: true, count: n)
        @inline(__always) func rankAndNew(_ a: Int32, _ b: Int32) -> UInt64? {
            merges[UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))]
        }
        var heap = MinHeap(capacity: n)
        for k in 0..<(n - 1) {
            if let v = rankAndNew(syms[k].id, syms[k + 1].id) { heap.push(v & 0xFFFF_FFFF_0000_0000 | UInt64(k)) }
        }
        while let top = heap.pop() {
            let pos = Int(top & 0xFFFF_FFFF), rank = top >> 32
            guard alive[pos], next[pos] >= 0 else { continue }
            let right = Int(next[pos])
            guard let v = rankAndNew(syms[pos].id, syms[right].id), v >> 32 == rank else { continue }
            syms[pos] = Symbol(id: Int32(truncatingIfNeeded: v & 0xFFFF_FFFF), start: syms[pos].start, end: syms[right].end)
            alive[right] = false
            next[pos] = next[right]
            if next[right] >= 0 { prev[Int(next[right])] = Int32(pos) }
            if prev[pos] >= 0, let w = rankAndNew(syms[Int(prev[pos])].id, syms[pos].id) {
                heap.push(w & 0xFFFF_FFFF_0000_0000 | UInt64(prev[pos]))
            }
            if next[pos] >= 0, let w = rankAndNew(syms[pos].id, syms[Int(next[pos])].id) {
                heap.push(w & 0xFFFF_FFFF_0000_0000 | UInt64(pos))
            }
        }
        var out: [ModelToken] = []
        var k = 0
        while k >= 0 {
            out.append(ModelToken(id: syms[k].id, start: syms[k].start, end: syms[k].end, text: nil))
            k = Int(next[k])
        }
        return out
    }
}

/// A binary min-heap of UInt64 keys (BPE's merge candidates: rank << 32 | position).
struct MinHeap {
    private var a: [UInt64] = []
    init(capacity: Int) { a.reserveCapacity(capacity) }
    var isEmpty: Bool { a.isEmpty }

    mutating func push(_ x: UInt64) {
        a.append(x)
        var i = a.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if a[p] <= x { break }
            a[i] = a[p]; i = p
        }
        a[i] = x
    }

    mutating func pop() -> UInt64? {
        guard let last = a.popLast() else { return nil }
        guard !a.isEmpty else { return last }
        let top = a[0]
        var i = 0
        let n = a.count
        while true {
            let l = 2 * i + 1
            if l >= n { break }
            let c = l + 1 < n && a[l + 1] < a[l] ? l + 1 : l
            if a[c] >= last { break }
            a[i] = a[c]; i = c
        }
        a[i] = last
        return top
    }
}
