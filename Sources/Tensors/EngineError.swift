/// Everything the engine refuses, with what the user needs to fix it.
public enum EngineError: Error, CustomStringConvertible, Equatable {
    /// The file could not be opened / read / mapped.
    case io(path: String, reason: String)
    /// The safetensors file is malformed (header, offsets, sizes).
    case corruptFile(path: String, reason: String)
    /// A tensor the model needs is not in the file.
    case missingTensor(path: String, name: String)
    /// A tensor has another shape than the config implies.
    case shapeMismatch(path: String, name: String, expected: [Int], actual: [Int])
    /// A dtype we cannot read (unknown string, or not convertible to f32).
    case unsupportedDtype(path: String, name: String, dtype: String)
    /// config.json is missing a key, has a wrong type, or an inconsistent value.
    case invalidConfig(path: String, key: String, reason: String)
    /// A model type or setting this engine does not implement (refused, not ignored).
    case unsupported(String)
    /// A token id outside [0, vocabSize).
    case tokenOutOfRange(token: Int, vocabSize: Int)
    /// An input that must not be empty was empty.
    case emptyInput(String)
    /// Anything else the caller passed wrongly (a session of another model, mismatched counts...).
    case invalidArgument(String)

    public var description: String {
        switch self {
        case let .io(path, reason):
            return "cannot read \(path): \(reason)"
        case let .corruptFile(path, reason):
            return "corrupt safetensors file \(path): \(reason)"
        case let .missingTensor(path, name):
            return "tensor '\(name)' is missing from \(path)"
        case let .shapeMismatch(path, name, expected, actual):
            return "tensor '\(name)' in \(path) has shape \(actual), expected \(expected) (does config.json match the weights?)"
        case let .unsupportedDtype(path, name, dtype):
            return "tensor '\(name)' in \(path) has dtype \(dtype); supported: F32, F16, BF16, F64"
        case let .invalidConfig(path, key, reason):
            return "\(path): '\(key)' \(reason)"
        case let .unsupported(what):
            return "unsupported: \(what)"
        case let .tokenOutOfRange(token, vocabSize):
            return "token id \(token) is outside the vocabulary [0, \(vocabSize))"
        case let .emptyInput(what):
            return "empty input: \(what)"
        case let .invalidArgument(what):
            return "invalid argument: \(what)"
        }
    }
}
