import Foundation

/// The clinical/dental lexicon: lower-case words. Built at training time from the training
/// data's words that carry a clinical or dental morpheme (the shipped `ClinicalMorphemes`), and
/// stored in gate.json so the router needs nothing else.
public struct Lexicon: Sendable, Equatable {
    public private(set) var words: Set<String>

    public init(words: some Sequence<String>) { self.words = Set(words.map { $0.lowercased() }) }

    public func contains(_ word: some StringProtocol) -> Bool { words.contains(word.lowercased()) }

    /// Greek/Latin roots and affixes of medicine and dentistry. Short, deliberately: a word
    /// qualifies when it is at least 5 letters long and contains one of them.
    public static let clinicalMorphemes: [String] = [
        "itis", "osis", "emia", "aemia", "algia", "ectomy", "otomy", "ostomy", "plasty", "pathy", "oma",
        "cardi", "hepat", "nephr", "neur", "gastr", "derm", "oste", "arthr", "hemat", "haemat", "cyte",
        "dent", "dont", "gingiv", "perio", "molar", "tooth", "teeth", "enamel", "pulp", "caries", "oral",
        "pharm", "therap", "syndrome", "tumor", "tumour", "cancer", "carcin", "infect", "lesion",
        "vascul", "pulmon", "bronch", "thorac", "abdom", "uter", "ovar", "prostat", "renal", "cereb",
        "spinal", "muscul", "tendon", "ligament", "fractur", "sclero", "myel", "lymph", "glyc", "lipid",
        "insulin", "hormon", "toxi", "antibio", "vaccin", "virus", "viral", "bacter", "fung", "parasit",
        "surg", "anesth", "anaesth", "analges", "inflamm", "chronic", "acute", "clinic", "medic", "diagnos",
        "pediatr", "paediatr", "psych", "ophthalm", "optic", "retin", "cornea", "cochle", "laryn", "trache",
    ]

    /// Whether `word` looks clinical by its morphemes (used only to build the lexicon).
    public static func looksClinical(_ word: String) -> Bool {
        guard word.count >= 5 else { return false }
        let w = word.lowercased()
        return clinicalMorphemes.contains { w.contains($0) }
    }

    /// The lexicon of a corpus: its words that look clinical.
    public static func build(from texts: some Sequence<String>) -> Lexicon {
        var found = Set<String>()
        for text in texts {
            for word in Words.split(text) where Self.looksClinical(word.text) { found.insert(word.text.lowercased()) }
        }
        return Lexicon(words: found)
    }
}

/// Words of a text (maximal runs of letters) with their UTF-8 byte ranges, to map tokens
/// (whose offsets are byte ranges) to the word they belong to.
public enum Words {
    public struct Word: Equatable { public var text: String; public var bytes: Range<Int> }

    public static func split(_ text: String) -> [Word] {
        var words: [Word] = []
        var current = ""
        var start = 0
        var offset = 0
        for scalar in text.unicodeScalars {
            let length = UTF8.width(scalar)
            if scalar.properties.isAlphabetic {
                if current.isEmpty { start = offset }
                current.unicodeScalars.append(scalar)
            } else if !current.isEmpty {
                words.append(Word(text: current, bytes: start..<offset))
                current = ""
            }
            offset += length
        }
        if !current.isEmpty { words.append(Word(text: current, bytes: start..<offset)) }
        return words
    }
}
