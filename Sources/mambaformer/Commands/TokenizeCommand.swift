import ArgumentParser
import Foundation
import Tokenizers

/// `mambaformer tokenize`: encode or decode with a tokenizer.json, one-shot or as a JSON-lines
/// filter (stdin -> stdout, one result line per input line, in order; a bad line yields
/// `{"error": "..."}` and the filter carries on).
struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Encode or decode text with a Hugging Face tokenizer.json.",
        discussion: """
        Examples:
          mambaformer tokenize --tokenizer models/demo/et5 --text "Is aspirin safe?" --json
          mambaformer tokenize --tokenizer tok.json --decode 71,19,1 --keep-special --json
          echo '{"text": "hi", "add_special_tokens": false}' | mambaformer tokenize --tokenizer tok.json --jsonl
          echo '{"ids": [71, 1], "skip_special_tokens": true}' | mambaformer tokenize --tokenizer tok.json --jsonl
        """
    )

    @Option(help: "A tokenizer.json file, or a folder containing one.")
    var tokenizer: String

    @Option(help: "Text to encode.")
    var text: String?

    @Flag(help: "Encode without the post-processor's special tokens (e.g. T5's final </s>).")
    var noSpecial = false

    @Option(help: "Comma-separated ids to decode, e.g. 1,2,3.")
    var decode: String?

    @Flag(help: "Keep special tokens when decoding.")
    var keepSpecial = false

    @Flag(help: "Print JSON: {\"ids\": [...], \"tokens\": [...]} or {\"text\": \"...\"}.")
    var json = false

    @Flag(help: "Read JSON lines from stdin: {\"text\": ..., \"add_special_tokens\": true} or {\"ids\": [...], \"skip_special_tokens\": true}.")
    var jsonl = false

    @Option(help: ArgumentHelp("Benchmark: encode every line of this file (see benchmarks/tokenizers).", visibility: .hidden))
    var benchmark: String?

    @Option(help: ArgumentHelp("Benchmark repetitions.", visibility: .hidden))
    var repeats = 5

    func validate() throws {
        let modes = [text != nil, decode != nil, jsonl, benchmark != nil].filter { $0 }.count
        guard modes == 1 else { throw ValidationError("Pass exactly one of --text, --decode or --jsonl.") }
    }

    func run() throws {
        let tok: Tokenizer
        do { tok = try Tokenizer.load(from: URL(fileURLWithPath: tokenizer)) } catch {
            throw ValidationError("\(error)")
        }
        if let benchmark {
            try runBenchmark(tok, corpus: benchmark)
        } else if let text {
            let e = try tok.encode(text, addSpecialTokens: !noSpecial)
            if json { print(TokenizeJSON.encoding(e)) }
            else {
                print(e.ids.map(String.init).joined(separator: " "))
                print(e.tokens.map { $0.debugDescription }.joined(separator: " "))
            }
        } else if let decode {
            var ids: [Int] = []
            for part in decode.split(separator: ",", omittingEmptySubsequences: false) {
                let p = part.trimmingCharacters(in: .whitespaces)
                guard let id = Int(p) else { throw ValidationError("--decode: \(p.debugDescription) is not an integer id") }
                ids.append(id)
            }
            let s = try tok.decode(ids, skipSpecialTokens: !keepSpecial)
            print(json ? TokenizeJSON.text(s) : s)
        } else {
            runJSONLines(tok)
        }
    }

    /// Encode each line of `corpus` (one thread, like the Python side's single-threaded
    /// encode_batch), `repeats` times after one warm-up pass; print JSON with the best time.
    private func runBenchmark(_ tok: Tokenizer, corpus: String) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: corpus))
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var tokens = 0
        for l in lines { tokens += try tok.encode(l).ids.count }   // warm-up (fills the word cache, as Python's does)
        var best = Double.infinity
        for _ in 0..<max(1, repeats) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            var n = 0
            for l in lines { n += try tok.encode(l).ids.count }
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            best = min(best, dt)
            precondition(n == tokens)
        }
        print("{\"lines\": \(lines.count), \"bytes\": \(data.count), \"tokens\": \(tokens), \"seconds\": \(best)}")
    }

    /// The stdin filter. Reads raw bytes (not String lines) so invalid UTF-8 is reported, not repaired.
    private func runJSONLines(_ tok: Tokenizer) {
        let input = FileHandle.standardInput
        var buffer = [UInt8]()
        var out = [UInt8]()
        func handle(_ line: ArraySlice<UInt8>) {
            var l = line
            if l.last == 0x0D { l = l.dropLast() }
            let result = TokenizeJSON.handleLine(Array(l), tok)
            out.append(contentsOf: result.utf8); out.append(0x0A)
        }
        while true {
            let chunk = input.availableData
            if chunk.isEmpty { break }
            buffer.append(contentsOf: chunk)
            var start = 0
            while let nl = buffer[start...].firstIndex(of: 0x0A) {
                handle(buffer[start..<nl]); start = nl + 1
            }
            buffer.removeFirst(start)
            if !out.isEmpty { FileHandle.standardOutput.write(Data(out)); out.removeAll(keepingCapacity: true) }
        }
        if !buffer.isEmpty { handle(buffer[...]) }
        if !out.isEmpty { FileHandle.standardOutput.write(Data(out)) }
    }
}

/// JSON in and out for `tokenize`, kept small and exact (UTF-8 output, ids as integers).
enum TokenizeJSON {
    static func handleLine(_ bytes: [UInt8], _ tok: Tokenizer) -> String {
        do {
            // Reject invalid UTF-8 before JSON parsing (Foundation would reject it with a vaguer message).
            let line = try utf8Line(bytes)
            if line.allSatisfy({ $0 == " " || $0 == "\t" }) { return error("empty line") }
            // JSONDecoder, not JSONSerialization: the latter drops a U+FEFF that opens a string
            // value (Hugging Face keeps it as a character), and no JSON path may alter text.
            let request: LineRequest
            do { request = try JSONDecoder().decode(LineRequest.self, from: Data(line.utf8)) } catch let e as DecodingError {
                switch e {
                case .typeMismatch(_, let context), .valueNotFound(_, let context):
                    switch context.codingPath.first?.stringValue {
                    case "text": return error("\"text\" must be a string")
                    case "ids": return error("\"ids\" must be an array of integers")
                    case .some(let key): return error("\"\(key)\" must be a boolean")
                    case nil: return error("line is not a JSON object")
                    }
                default: return error("line is not a JSON object")
                }
            }
            if let t = request.text { return encoding(try tok.encode(t, addSpecialTokens: request.addSpecialTokens ?? true)) }
            if let ids = request.ids { return text(try tok.decode(ids, skipSpecialTokens: request.skipSpecialTokens ?? true)) }
            return error("expected {\"text\": ...} or {\"ids\": [...]}")
        } catch {
            return self.error("\(error)")
        }
    }

    struct LineRequest: Decodable {
        var text: String?
        var ids: [Int]?
        var addSpecialTokens: Bool?
        var skipSpecialTokens: Bool?
        enum CodingKeys: String, CodingKey {
            case text, ids, addSpecialTokens = "add_special_tokens", skipSpecialTokens = "skip_special_tokens"
        }
    }

    static func utf8Line(_ b: [UInt8]) throws -> String { try Tokenizer.string(fromUTF8: b) }

    static func encoding(_ e: Encoding) -> String {
        "{\"ids\": [" + e.ids.map(String.init).joined(separator: ", ") + "], \"tokens\": [" + e.tokens.map(quote).joined(separator: ", ") + "]}"
    }
    static func text(_ s: String) -> String { "{\"text\": " + quote(s) + "}" }
    static func error(_ s: String) -> String { "{\"error\": " + quote(s) + "}" }

    static func quote(_ s: String) -> String {
        var o = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": o += "\\\""
            case "\\": o += "\\\\"
            case "\n": o += "\\n"
            case "\r": o += "\\r"
            case "\t": o += "\\t"
            default:
                if u.value < 0x20 || u.value == 0x7F { o += String(format: "\\u%04x", u.value) } else { o.unicodeScalars.append(u) }
            }
        }
        return o + "\""
    }
}
