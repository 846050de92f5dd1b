/// OpenAI's `stop`: the answer ends just before the first occurrence of any stop string in the
/// merged text, wherever it falls (inside a span, across spans and experts). A stream never
/// sends text that could still turn out to begin a match: the longest tail of the text that is
/// a prefix of a stop string is held back until more text decides it (so at most the longest
/// stop string minus one byte), and released at the end if no match came.
///
/// Matching is on UTF-8 bytes; a stop string is valid UTF-8, so a match and a held tail always
/// begin on a character boundary.
struct StopMatcher {
    /// At most this many stop strings (OpenAI's limit), each 1…`maxLength` characters (Unicode
    /// scalars, as JSON Schema counts them: at most 512 bytes).
    static let maxCount = 4
    static let maxLength = 128

    private let stops: [[UInt8]]
    private var text: [UInt8] = []
    /// Bytes of `text` already handed out.
    private var released = 0
    /// Where the first match begins, once found.
    private(set) var matchedAt: Int?

    init(_ stops: [String]) {
        self.stops = stops.map { Array($0.utf8) }.filter { !$0.isEmpty }
    }

    /// The merged answer grows by `piece`: returns the text now safe to send (nothing after a
    /// match) and whether a stop string matched (then nothing more is accepted).
    mutating func append(_ piece: String) -> (release: String, matched: Bool) {
        guard matchedAt == nil else { return ("", true) }
        text += piece.utf8
        // A match cannot begin in text already released: that text ended with no prefix of a
        // stop string held back, so no match could start there.
        if let at = firstMatch(from: released) {
            matchedAt = at
            defer { released = at }
            return (decode(released..<at), true)
        }
        let safeEnd = text.count - heldTail()
        defer { released = max(released, safeEnd) }
        return (decode(released..<max(released, safeEnd)), false)
    }

    /// No more text comes: what was held back (empty after a match).
    mutating func flush() -> String {
        guard matchedAt == nil else { return "" }
        defer { released = text.count }
        return decode(released..<text.count)
    }

    /// The answer: up to the match, or all of it.
    var answer: String { decode(0..<(matchedAt ?? text.count)) }

    private func firstMatch(from start: Int) -> Int? {
        guard !stops.isEmpty, start < text.count else { return nil }
        for i in start..<text.count {
            for stop in stops where i + stop.count <= text.count && text[i..<(i + stop.count)].elementsEqual(stop) {
                return i
            }
        }
        return nil
    }

    /// The length of the longest unreleased tail of the text that is a proper prefix of a stop.
    private func heldTail() -> Int {
        let longest = min(text.count - released, (stops.map(\.count).max() ?? 1) - 1)
        guard longest > 0 else { return 0 }
        for length in stride(from: longest, through: 1, by: -1) {
            let tail = text[(text.count - length)...]
            if stops.contains(where: { $0.count > length && $0[0..<length].elementsEqual(tail) }) { return length }
        }
        return 0
    }

    private func decode(_ range: Range<Int>) -> String {
        String(decoding: text[range], as: UTF8.self)
    }
}
