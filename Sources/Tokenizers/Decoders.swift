/// Decoders: turn a list of token strings back into text (HF `decode_chain`, then joined).
enum Decoder {
    case byteLevel
    case metaspace(replacement: Unicode.Scalar, prependScheme: PreTokenizer.PrependScheme)
    case byteFallback
    case fuse
    case strip(content: Unicode.Scalar, start: Int, stop: Int)
    case replace(Pattern, String)
    case sequence([Decoder])

    static func parse(_ j: JSONObject) throws -> Decoder {
        let type = try j.string("type")
        switch type {
        case "ByteLevel": return .byteLevel
        case "Metaspace":
            let r = try j.string("replacement").unicodeScalars
            guard r.count == 1, let rep = r.first else { throw j.fail("Metaspace replacement must be one character") }
            var scheme = PreTokenizer.PrependScheme.always
            if let s = try j.optString("prepend_scheme") {
                guard let p = PreTokenizer.PrependScheme(rawValue: s) else {
                    throw TokenizerError.unsupportedOption(section: "decoder Metaspace", option: "prepend_scheme", value: s)
                }
                scheme = p
            } else if j.has("add_prefix_space") {
                scheme = try j.bool("add_prefix_space", default: true) ? .always : .never
            }
            return .metaspace(replacement: rep, prependScheme: scheme)
        case "ByteFallback": return .byteFallback
        case "Fuse": return .fuse
        case "Strip":
            let c = try j.string("content").unicodeScalars
            guard c.count == 1, let ch = c.first else { throw j.fail("Strip content must be one character") }
            return .strip(content: ch, start: try j.int("start", default: 0), stop: try j.int("stop", default: 0))
        case "Replace":
            return .replace(try j.pattern("pattern"), try j.string("content"))
        case "Sequence":
            return .sequence(try j.objects("decoders").map(parse))
        default:
            throw TokenizerError.unsupportedComponent(section: "decoder", type: type,
                hint: "supported: ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, Sequence")
        }
    }

    func decode(_ tokens: [String]) -> String { decodeChain(tokens).joined() }

    func decodeChain(_ tokens: [String]) -> [String] {
        switch self {
        case .byteLevel:
            var bytes: [UInt8] = []
            for t in tokens {
                let start = bytes.count
                var ok = true
                for s in t.unicodeScalars {
                    if let b = ByteLevel.scalarToByte[s.value] { bytes.append(b) } else { ok = false; break }
                }
                if !ok { bytes.removeSubrange(start...); bytes.append(contentsOf: t.utf8) }
            }
            return [String(decoding: bytes, as: UTF8.self)]
        case .metaspace(let rep, let scheme):
            return tokens.enumerated().map { i, t in
                var v = String.UnicodeScalarView()
                for c in t.unicodeScalars {
                    if c == rep { if !(i == 0 && scheme != .never) { v.append(" ") } } else { v.append(c) }
                }
                return String(v)
            }
        case .byteFallback:
            var out: [String] = []
            var pending: [UInt8] = []
            func flush() {
                guard !pending.isEmpty else { return }
                if let s = String(validating: pending, as: UTF8.self) { out.append(s) }
                else { out.append(contentsOf: repeatElement("\u{FFFD}", count: pending.count)) }
                pending.removeAll()
            }
            for t in tokens {
                if let b = Decoder.byteToken(t) { pending.append(b) } else { flush(); out.append(t) }
            }
            flush()
            return out
        case .fuse:
            return [tokens.joined()]
        case .strip(let content, let start, let stop):
            return tokens.map { t in
                let u = Array(t.unicodeScalars)
                var a = 0
                while a < min(start, u.count) && u[a] == content { a += 1 }
                var b = u.count
                var k = 0
                while k < stop && b > a && u[b - 1] == content { b -= 1; k += 1 }
                return stringFromScalars(u[a..<b])
            }
        case .replace(let p, let content):
            let c = Array(content.unicodeScalars)
            return tokens.map { t in
                let u = Array(t.unicodeScalars)
                let m = p.matches(in: u)
                if m.isEmpty { return t }
                var v = String.UnicodeScalarView()
                var last = 0
                for r in m { v.append(contentsOf: u[last..<r.lowerBound]); v.append(contentsOf: c); last = r.upperBound }
                v.append(contentsOf: u[last...])
                return String(v)
            }
        case .sequence(let ds):
            var t = tokens
            for d in ds { t = d.decodeChain(t) }
            return t
        }
    }

    /// `<0xAB>` -> 0xAB.
    static func byteToken(_ t: String) -> UInt8? {
        let u = t.utf8
        guard u.count == 6 else { return nil }
        let a = Array(u)
        guard a[0] == UInt8(ascii: "<"), a[1] == UInt8(ascii: "0"), a[2] == UInt8(ascii: "x"), a[5] == UInt8(ascii: ">") else { return nil }
        func hex(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: return c - 48
            case 65...70: return c - 55
            case 97...102: return c - 87
            default: return nil
            }
        }
        guard let h = hex(a[3]), let l = hex(a[4]) else { return nil }
        return h << 4 | l
    }
}
