import Foundation

/// Everything that can go wrong loading, training or running the trained gate; each case
/// names the file, tensor or value to fix.
public enum GateError: Error, CustomStringConvertible {
    case missingFile(String)
    case invalidFile(file: String, reason: String)
    case vocabularyMismatch(file: String, expected: Int, actual: Int)
    case invalidData(file: String, line: Int, reason: String)
    case invalidArgument(String)
    case expert(String)

    public var description: String {
        switch self {
        case .missingFile(let path): return "gate: \(path) does not exist"
        case .invalidFile(let file, let reason): return "gate: \(file): \(reason)"
        case .vocabularyMismatch(let file, let expected, let actual):
            return "gate: \(file) has a vocabulary of \(actual) tokens but the gate was trained on \(expected); retrain the gate (mambaformer gate train)"
        case .invalidData(let file, let line, let reason): return "gate: \(file):\(line): \(reason)"
        case .invalidArgument(let message): return "gate: \(message)"
        case .expert(let message): return "gate: expert: \(message)"
        }
    }
}
