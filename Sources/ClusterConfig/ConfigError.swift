// What can be wrong with a configuration, said so that an operator can fix it:
// where the value came from (file and line, environment variable, flag) and why it is refused.

/// Where a setting's value came from, in precedence order (a flag beats the environment,
/// which beats the file, which beats the built-in default).
public enum ConfigOrigin: Equatable, CustomStringConvertible, Sendable {
    case flag(String)
    case environment(String)
    case file(path: String, line: Int)
    case builtInDefault

    public var description: String {
        switch self {
        case .flag(let name): return "flag \(name)"
        case .environment(let name): return "environment variable \(name)"
        case .file(let path, let line): return line > 0 ? "\(path):\(line)" : path
        case .builtInDefault: return "built-in default"
        }
    }
}

/// One refused setting.
public struct ConfigProblem: Equatable, CustomStringConvertible, Sendable {
    public enum Kind: Equatable, Sendable {
        /// Not a setting of this section (a typo, or a section that does not exist).
        case unknownKey(suggestion: String?)
        case wrongType(expected: String, got: String)
        case outOfRange(value: String, allowed: String)
        case invalidValue(value: String, reason: String)
    }

    public var origin: ConfigOrigin
    /// The dotted setting name, e.g. `router.span_tokens`.
    public var key: String
    public var kind: Kind

    public init(origin: ConfigOrigin, key: String, kind: Kind) {
        self.origin = origin; self.key = key; self.kind = kind
    }

    public var description: String {
        let reason: String
        switch kind {
        case .unknownKey(let suggestion):
            reason = "unknown setting" + (suggestion.map { " (did you mean \($0)?)" } ?? "")
        case .wrongType(let expected, let got):
            reason = "expected \(expected), got \(got)"
        case .outOfRange(let value, let allowed):
            reason = "\(value) is out of range (allowed: \(allowed))"
        case .invalidValue(let value, let reason2):
            reason = "\(value) is invalid: \(reason2)"
        }
        return "\(origin): \(key): \(reason)"
    }
}

public enum ClusterConfigError: Error, Equatable, CustomStringConvertible {
    /// A configuration file named explicitly (`--config`, MAMBAFORMER_CONFIG) does not exist.
    case fileMissing(path: String)
    case fileUnreadable(path: String, reason: String)
    /// Not TOML at all (from the TOML parser, with its position).
    case syntax(path: String, line: Int, column: Int, message: String)
    /// TOML, but some settings are refused; every problem is listed, in file order.
    case invalid([ConfigProblem])

    public var description: String {
        switch self {
        case .fileMissing(let path):
            return "configuration file \(path) does not exist (see Deploy/cluster.toml for a skeleton)"
        case .fileUnreadable(let path, let reason):
            return "configuration file \(path) cannot be read: \(reason)"
        case .syntax(let path, let line, let column, let message):
            return "\(path):\(line):\(column): not valid TOML: \(message)"
        case .invalid(let problems):
            return "invalid configuration:\n" + problems.map { "  \($0)" }.joined(separator: "\n")
        }
    }

    /// The problems of an `.invalid` error (empty otherwise); handy for tests.
    public var problems: [ConfigProblem] {
        if case .invalid(let p) = self { return p }
        return []
    }
}
