import TOMLKit

/// One named client's limits, from a `[[clients]]` table of the configuration file:
///
///     [[clients]]
///     name = "ehr-assistant"      # as in the token file's NAME:TOKEN line
///     rpm = 600                   # requests per minute
///     tpm = 60000                 # generated tokens per minute
///     max_concurrent = 16         # answers in flight at once
///
/// A limit left out (or 0) is no limit. The secret stays in the token file and is matched by
/// name, so this file can be world-readable. Limits are per gateway.
public struct ClientLimits: Equatable, Sendable {
    public var name: String
    public var rpm: Int
    public var tpm: Int
    public var maxConcurrent: Int

    public init(name: String, rpm: Int = 0, tpm: Int = 0, maxConcurrent: Int = 0) {
        self.name = name; self.rpm = rpm; self.tpm = tpm; self.maxConcurrent = maxConcurrent
    }

    /// Limit keys and their largest values (a minute's worth; 0 is "no limit").
    static let keys: [(key: String, max: Int)] = [("rpm", 10_000_000), ("tpm", 1_000_000_000), ("max_concurrent", 100_000)]

    /// The same alphabet as the token file's names: `[A-Za-z0-9._-]`, 1-64 characters.
    public static func isValidName(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count) && name.unicodeScalars.allSatisfy { u in
            (u >= "A" && u <= "Z") || (u >= "a" && u <= "z") || (u >= "0" && u <= "9") || u == "." || u == "_" || u == "-"
        }
    }
}

extension ConfigFile {
    /// `[[clients]]` tables: each needs a valid, unique `name`; limits are integers in range.
    /// `headerLines` are the lines of the file's `[[clients]]` headers, in order.
    static func clients(_ node: TOMLValueConvertible, path: String, headerLines: [Int])
        -> (clients: [ClientLimits], problems: [ConfigProblem]) {
        var clients: [ClientLimits] = []
        var problems: [ConfigProblem] = []
        guard let array = node.array else {
            let origin = ConfigOrigin.file(path: path, line: headerLines.first ?? 0)
            return ([], [.init(origin: origin, key: "clients",
                               kind: .wrongType(expected: "[[clients]] tables", got: "a TOML \(node.type)"))])
        }
        var seen = Set<String>()
        for (index, element) in array.enumerated() {
            let origin = ConfigOrigin.file(path: path, line: index < headerLines.count ? headerLines[index] : 0)
            let key = "clients[\(index)]"
            guard let table = element.table else {
                problems.append(.init(origin: origin, key: key, kind: .wrongType(expected: "a table", got: "a TOML \(element.type)")))
                continue
            }
            var entry = ClientLimits(name: "")
            var valid = true
            for (field, value) in table {
                if field == "name" {
                    guard value.type == .string, let name = value.string, ClientLimits.isValidName(name) else {
                        problems.append(.init(origin: origin, key: "\(key).name", kind: .invalidValue(
                            value: value.string.map { "\"\($0)\"" } ?? "a TOML \(value.type)",
                            reason: "a client name is 1-64 of A-Z a-z 0-9 . _ - (as in the token file's NAME:TOKEN)")))
                        valid = false
                        continue
                    }
                    entry.name = name
                } else if let limit = ClientLimits.keys.first(where: { $0.key == field }) {
                    guard value.type == .int, let n = value.int else {
                        problems.append(.init(origin: origin, key: "\(key).\(field)",
                                              kind: .wrongType(expected: "an integer", got: "a TOML \(value.type)")))
                        valid = false
                        continue
                    }
                    guard (0...limit.max).contains(n) else {
                        problems.append(.init(origin: origin, key: "\(key).\(field)",
                                              kind: .outOfRange(value: "\(n)", allowed: "0...\(limit.max) (0: no limit)")))
                        valid = false
                        continue
                    }
                    switch field {
                    case "rpm": entry.rpm = n
                    case "tpm": entry.tpm = n
                    default: entry.maxConcurrent = n
                    }
                } else {
                    let known = ["name"] + ClientLimits.keys.map(\.key)
                    let best = known.min { Schema.editDistance($0, field) < Schema.editDistance($1, field) }
                    let suggestion = best.flatMap { Schema.editDistance($0, field) <= 2 ? "\(key).\($0)" : nil }
                    problems.append(.init(origin: origin, key: "\(key).\(field)", kind: .unknownKey(suggestion: suggestion)))
                    valid = false
                }
            }
            if entry.name.isEmpty {
                if valid {
                    problems.append(.init(origin: origin, key: "\(key).name",
                                          kind: .invalidValue(value: "nothing", reason: "every [[clients]] table needs a name")))
                }
                continue
            }
            guard seen.insert(entry.name).inserted else {
                problems.append(.init(origin: origin, key: "\(key).name",
                                      kind: .invalidValue(value: "\"\(entry.name)\"", reason: "this name has a [[clients]] table already")))
                continue
            }
            if valid { clients.append(entry) }
        }
        return (clients, problems)
    }

    /// The 1-based lines of `[[clients]]` headers.
    static func clientHeaderLines(_ text: String) -> [Int] {
        text.split(separator: "\n", omittingEmptySubsequences: false).enumerated().compactMap { number, raw in
            let line = raw.trimmingCharacters(in: .whitespaces)
            guard line.hasPrefix("[[") else { return nil }
            let inner = line.dropFirst(2).prefix { $0 != "]" }.trimmingCharacters(in: .whitespaces)
            return inner == "clients" ? number + 1 : nil
        }
    }
}
