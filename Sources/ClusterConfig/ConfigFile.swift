import Foundation
import TOMLKit

/// A parsed configuration file: every setting it names, with the line it is on.
///
/// TOMLKit (toml++) does the parsing; it reports positions only for syntax errors, so a small
/// scan of the text maps each dotted key to its line (`TOMLLineIndex`) for the other errors.
public struct ConfigFile {
    public let path: String
    /// `router.span_tokens` → value and line. Only known settings; the rest are `problems`.
    public private(set) var entries: [String: (value: ConfigValue, line: Int)] = [:]
    /// Unknown keys and wrong types/ranges, in file order.
    public private(set) var problems: [ConfigProblem] = []
    /// The `[[clients]]` tables: named clients' limits (see `ClientLimits`).
    public private(set) var clients: [ClientLimits] = []

    public static func load(path: String) throws -> ConfigFile {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ClusterConfigError.fileMissing(path: path)
        }
        guard !isDirectory.boolValue else { throw ClusterConfigError.fileUnreadable(path: path, reason: "it is a directory") }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ClusterConfigError.fileUnreadable(path: path, reason: "permission denied or I/O error")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ClusterConfigError.fileUnreadable(path: path, reason: "not UTF-8 text")
        }
        return try ConfigFile(text: text, path: path)
    }

    public init(text: String, path: String) throws {
        self.path = path
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ClusterConfigError.syntax(path: path, line: error.source.begin.line,
                                            column: error.source.begin.column, message: error.description)
        }
        let lines = TOMLLineIndex(text: text)
        if let node = table["clients"] {
            let parsed = Self.clients(node, path: path, headerLines: Self.clientHeaderLines(text))
            clients = parsed.clients
            problems += parsed.problems
        }
        walk(table, prefix: [], lines: lines)
        problems.sort { a, b in
            if case .file(_, let la) = a.origin, case .file(_, let lb) = b.origin, la != lb { return la < lb }
            return a.key < b.key
        }
    }

    private mutating func walk(_ table: TOMLTable, prefix: [String], lines: TOMLLineIndex) {
        let section = prefix.joined(separator: ".")
        for (key, node) in table {
            if prefix.isEmpty, key == "clients" { continue }   // read above
            let path = (prefix + [key]).joined(separator: ".")
            let origin = ConfigOrigin.file(path: self.path, line: lines.line(of: prefix + [key]))
            if let sub = node.table {
                if Schema.sections.contains(path) {
                    walk(sub, prefix: prefix + [key], lines: lines)
                } else {
                    let suggestion = Schema.suggestion(for: key, in: nil).map { prefix.isEmpty ? "[\($0)]" : $0 }
                    problems.append(.init(origin: origin, key: path, kind: .unknownKey(suggestion: prefix.isEmpty ? suggestion : nil)))
                }
                continue
            }
            if Schema.sections.contains(path) {
                problems.append(.init(origin: origin, key: path, kind: .wrongType(expected: "a table [\(path)]", got: "a TOML \(node.type)")))
                continue
            }
            guard let setting = Schema.setting(path), Schema.sections.contains(section) else {
                let suggestion = Schema.sections.contains(section) ? Schema.suggestion(for: key, in: section) : nil
                problems.append(.init(origin: origin, key: path, kind: .unknownKey(suggestion: suggestion)))
                continue
            }
            guard let value = Self.value(of: node) else {
                problems.append(.init(origin: origin, key: path,
                                      kind: .wrongType(expected: setting.type.expected, got: "a TOML \(node.type)")))
                continue
            }
            if let problem = setting.type.check(value) {
                problems.append(.init(origin: origin, key: path, kind: problem))
                continue
            }
            if case .file(_, let line) = origin { entries[path] = (value, line) }
        }
    }
}

extension ConfigFile {
    /// A TOML value as a setting's value; arrays of scalars become lists (the type check
    /// then refuses a list where the setting takes one value).
    static func value(of node: TOMLValueConvertible) -> ConfigValue? {
        switch node.type {
        case .string: return .string(node.string ?? "")
        case .int: return .int(node.int ?? 0)
        case .bool: return .bool(node.bool ?? false)
        case .array:
            guard let array = node.array else { return nil }
            var items: [ConfigValue] = []
            for element in array {
                guard element.type != .array, let item = value(of: element) else { return nil }
                items.append(item)
            }
            return .list(items)
        default: return nil
        }
    }
}

/// Maps dotted key paths to the (1-based) line that defines them: `[section]` headers and
/// `key = value` lines, dotted and quoted keys included. Lines inside multi-line strings or
/// arrays may be mistaken for keys; that only matters if they look exactly like a setting.
struct TOMLLineIndex {
    private var lines: [String: Int] = [:]

    init(text: String) {
        var table: [String] = []
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("[") {
                let inner = line.drop { $0 == "[" }.prefix { $0 != "]" }
                table = Self.keyPath(String(inner))
                record(table, number + 1)
                continue
            }
            guard let eq = Self.assignment(line) else { continue }
            let key = Self.keyPath(String(line[..<eq]))
            // Dotted keys define their parent tables on this line too.
            for n in 1...max(1, key.count) { record(table + key.prefix(n), number + 1) }
        }
    }

    private mutating func record(_ path: [String], _ line: Int) {
        let joined = path.joined(separator: ".")
        if lines[joined] == nil { lines[joined] = line }
    }

    /// The line of `path`, else of its closest recorded parent, else 0 (unknown).
    func line(of path: [String]) -> Int {
        var p = path
        while !p.isEmpty {
            if let l = lines[p.joined(separator: ".")] { return l }
            p.removeLast()
        }
        return 0
    }

    /// The `=` of a `key = value` line (outside quoted key parts).
    static func assignment(_ line: String) -> String.Index? {
        var quote: Character?
        for i in line.indices {
            let c = line[i]
            if let q = quote { if c == q { quote = nil }; continue }
            if c == "\"" || c == "'" { quote = c; continue }
            if c == "=" { return i }
        }
        return nil
    }

    /// `a."b.c" . d` → ["a", "b.c", "d"].
    static func keyPath(_ text: String) -> [String] {
        var parts: [String] = []
        var current = ""
        var quote: Character?
        for c in text {
            if let q = quote {
                if c == q { quote = nil } else { current.append(c) }
            } else if c == "\"" || c == "'" {
                quote = c
            } else if c == "." {
                parts.append(current.trimmingCharacters(in: .whitespaces)); current = ""
            } else {
                current.append(c)
            }
        }
        parts.append(current.trimmingCharacters(in: .whitespaces))
        return parts
    }
}
