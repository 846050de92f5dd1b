import Foundation

/// Everything that stops a load test before or after it runs. Failures of individual requests
/// are not errors of the run: they are counted by class in the report.
public enum LoadGenError: Error, CustomStringConvertible, Equatable {
    case invalidOption(option: String, value: String, reason: String)
    case invalidTarget(String)
    /// The target resolves outside loopback and `--allow-remote` was not given.
    case remoteTargetRefused(host: String, addresses: [String])
    case unresolvableHost(host: String, reason: String)
    case emptyWorkload(String)
    case unreadableWorkload(path: String, reason: String)
    case badWorkloadLine(path: String, line: Int, reason: String)
    case unreadableReport(path: String, reason: String)
    case cannotWriteReport(path: String, reason: String)
    /// `--api openai` without `--model`, and the server's model list did not help.
    case noModel(target: String, reason: String)

    public var description: String {
        switch self {
        case .invalidOption(let option, let value, let reason):
            return "\(option) \"\(value)\": \(reason)"
        case .invalidTarget(let text):
            return "the target \"\(text)\" is not an http:// URL with a host, such as http://127.0.0.1:8080"
        case .remoteTargetRefused(let host, let addresses):
            return "refusing to load \(host) (\(addresses.joined(separator: ", "))): it is not a loopback address. "
                + "A load test must not hit another machine by accident; pass --allow-remote if this one is yours."
        case .unresolvableHost(let host, let reason):
            return "cannot resolve \(host): \(reason)"
        case .emptyWorkload(let source):
            return "the workload \(source) has no prompts"
        case .unreadableWorkload(let path, let reason):
            return "cannot read the workload \(path): \(reason)"
        case .badWorkloadLine(let path, let line, let reason):
            return "\(path):\(line): \(reason) (each line must be {\"question\": ..., \"context\"?: ...})"
        case .unreadableReport(let path, let reason):
            return "cannot read the report \(path): \(reason)"
        case .cannotWriteReport(let path, let reason):
            return "cannot write \(path): \(reason)"
        case .noModel(let target, let reason):
            return "no model to name for \(target): \(reason). Pass --model with the name the server serves."
        }
    }
}
