/// Post-processors: add the model's special tokens around an encoding, fix offsets.
enum PostProcessor {
    /// `template`: nil entries stand for the sequence `$A`, others are special-token ids/tokens.
    case template([[(id: Int, token: String)]?])
    case byteLevel(trimOffsets: Bool)
    case roberta(cls: (String, Int), sep: (String, Int), trimOffsets: Bool)
    case bert(cls: (String, Int), sep: (String, Int))
    case sequence([PostProcessor])

    static func parse(_ j: JSONObject) throws -> PostProcessor {
        let type = try j.string("type")
        func pair(_ key: String) throws -> (String, Int) {
            let a = try j.array(key)
            guard a.count == 2, let s = a[0] as? String, let n = a[1] as? Int else { throw j.fail("\(key) must be [token, id]") }
            return (s, n)
        }
        switch type {
        case "TemplateProcessing":
            let specials = try j.object("special_tokens")
            var items: [[(id: Int, token: String)]?] = []
            for (k, e) in try j.array("single").enumerated() {
                guard let d = e as? [String: Any] else { throw j.fail("single[\(k)] must be an object") }
                if let seq = d["Sequence"] as? [String: Any] {
                    guard (seq["id"] as? String) == "A" else { throw j.fail("single[\(k)]: a single-sequence template can only use $A") }
                    items.append(nil)
                } else if let sp = d["SpecialToken"] as? [String: Any], let name = sp["id"] as? String {
                    guard let def = specials.dict[name] as? [String: Any], let ids = def["ids"] as? [Int],
                          let toks = def["tokens"] as? [String], ids.count == toks.count else {
                        throw j.fail("single[\(k)]: special token \(name.debugDescription) is not defined in special_tokens")
                    }
                    items.append(zip(ids, toks).map { (id: $0, token: $1) })
                } else { throw j.fail("single[\(k)] must be {\"Sequence\": ...} or {\"SpecialToken\": ...}") }
            }
            return .template(items)
        case "ByteLevel":
            return .byteLevel(trimOffsets: try j.bool("trim_offsets", default: true))
        case "RobertaProcessing":
            return .roberta(cls: try pair("cls"), sep: try pair("sep"), trimOffsets: try j.bool("trim_offsets", default: true))
        case "BertProcessing":
            return .bert(cls: try pair("cls"), sep: try pair("sep"))
        case "Sequence":
            return .sequence(try j.objects("processors").map(parse))
        default:
            throw TokenizerError.unsupportedComponent(section: "post_processor", type: type,
                hint: "supported: TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence")
        }
    }

    func process(_ e: inout Encoding, addSpecialTokens: Bool) {
        switch self {
        case .template(let items):
            guard addSpecialTokens else { return }
            var out = Encoding()
            for item in items {
                if let specials = item {
                    for s in specials { out.append(id: s.id, token: s.token, offsets: 0..<0, special: true) }
                } else {
                    out.ids += e.ids; out.tokens += e.tokens; out.offsets += e.offsets; out.specialTokensMask += e.specialTokensMask
                }
            }
            e = out
        case .byteLevel(let trim):
            if trim { PostProcessor.trimOffsets(&e) }
        case .roberta(let cls, let sep, let trim):
            if trim { PostProcessor.trimOffsets(&e) }
            guard addSpecialTokens else { return }
            PostProcessor.wrap(&e, cls, sep)
        case .bert(let cls, let sep):
            guard addSpecialTokens else { return }
            PostProcessor.wrap(&e, cls, sep)
        case .sequence(let ps):
            for p in ps { p.process(&e, addSpecialTokens: addSpecialTokens) }
        }
    }

    private static func wrap(_ e: inout Encoding, _ cls: (String, Int), _ sep: (String, Int)) {
        var out = Encoding()
        out.append(id: cls.1, token: cls.0, offsets: 0..<0, special: true)
        out.ids += e.ids; out.tokens += e.tokens; out.offsets += e.offsets; out.specialTokensMask += e.specialTokensMask
        out.append(id: sep.1, token: sep.0, offsets: 0..<0, special: true)
        e = out
    }

    /// HF `process_offsets`: leading/trailing spaces (`Ġ` or whitespace) leave the offsets.
    /// Spaces are single bytes in the original, so counting scalars counts bytes.
    static func trimOffsets(_ e: inout Encoding) {
        let g: Unicode.Scalar = "\u{120}"
        for i in 0..<e.tokens.count {
            let u = Array(e.tokens[i].unicodeScalars)
            var lead = 0
            while lead < u.count && (u[lead] == g || CharClass.isWhitespace(u[lead])) { lead += 1 }
            var trail = 0
            while trail < u.count && (u[u.count - 1 - trail] == g || CharClass.isWhitespace(u[u.count - 1 - trail])) { trail += 1 }
            guard lead > 0 || trail > 0 else { continue }
            var a = e.offsets[i].lowerBound, b = e.offsets[i].upperBound
            if lead > 0 { a = min(a + lead, b) }
            if trail > 0 && b >= trail { b = max(b - trail, a) }
            e.offsets[i] = a..<b
        }
    }
}
