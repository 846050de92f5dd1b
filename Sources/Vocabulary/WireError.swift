import Foundation

/// Everything that can be wrong with a message received from another process.
/// Decoding never trusts its input: every way a frame can be malformed maps to one case,
/// so nodes can drop the frame, count it (by `kind`) and log what the peer got wrong.
public enum WireError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The frame is larger than `Limits.maxFrameBytes`.
    case frameTooLarge(bytes: Int, limit: Int)
    /// protobuf-c could not parse the bytes (truncated, bad varint, wrong wire type...).
    case malformed(bytes: Int)
    /// The peer speaks another major protocol version (`peer` is its packed major*1000+minor).
    case versionMismatch(peer: UInt32)
    /// A one-of that must be set is not (`Envelope.body`, `AnswerEvent.kind`).
    case missingField(String)
    /// A text field is longer than `Limits.maxTextBytes`.
    case fieldTooLarge(field: String, bytes: Int, limit: Int)
    /// A repeated field has more elements than allowed.
    case tooManyItems(field: String, count: Int, limit: Int)
    /// A text field is not valid UTF-8.
    case invalidUTF8(field: String)
    /// An enum field carries a value this version does not know.
    case unknownEnum(field: String, value: Int)
    /// A float field that must be a finite number is NaN or infinite.
    case notFinite(field: String)
    /// A ZeroMQ message with an unexpected number of frames (a ROUTER expects
    /// [identity, payload], a DEALER [payload]).
    case unexpectedFrames(count: Int, expected: Int)

    /// A short stable name for metrics labels (`wire_decode_errors_total{kind=...}`).
    public var kind: String {
        switch self {
        case .frameTooLarge: return "frame_too_large"
        case .malformed: return "malformed"
        case .versionMismatch: return "version_mismatch"
        case .missingField: return "missing_field"
        case .fieldTooLarge: return "field_too_large"
        case .tooManyItems: return "too_many_items"
        case .invalidUTF8: return "invalid_utf8"
        case .unknownEnum: return "unknown_enum"
        case .notFinite: return "not_finite"
        case .unexpectedFrames: return "unexpected_frames"
        }
    }

    public var description: String {
        switch self {
        case let .frameTooLarge(bytes, limit):
            return "wire frame of \(bytes) bytes exceeds the \(limit)-byte limit; dropped"
        case let .malformed(bytes):
            return "wire frame of \(bytes) bytes is not a valid protobuf Envelope; dropped"
        case let .versionMismatch(peer):
            return "peer speaks wire protocol \(WireProtocol.describe(peer)), this process speaks "
                + "\(WireProtocol.describe(WireProtocol.version)); major versions must match: "
                + "upgrade the older side"
        case let .missingField(field):
            return "wire message lacks required field \(field)"
        case let .fieldTooLarge(field, bytes, limit):
            return "wire field \(field) has \(bytes) bytes, over the \(limit)-byte limit"
        case let .tooManyItems(field, count, limit):
            return "wire field \(field) has \(count) items, over the limit of \(limit)"
        case let .invalidUTF8(field):
            return "wire field \(field) is not valid UTF-8"
        case let .unknownEnum(field, value):
            return "wire field \(field) has unknown enum value \(value)"
        case let .notFinite(field):
            return "wire field \(field) is not a finite number"
        case let .unexpectedFrames(count, expected):
            return "ZeroMQ message has \(count) frames, expected \(expected)"
        }
    }
}

/// Bounds applied by every decode. Generous for clinical QA (a long context is a few
/// hundred KiB) but small enough that a hostile peer cannot make a node allocate much.
public enum Limits {
    public static let maxFrameBytes = 4 * 1024 * 1024
    public static let maxTextBytes = 1024 * 1024
    public static let maxPieces = 4096
    /// Frames per ZeroMQ message accepted by `ZmqSocket.receive`; longer messages are
    /// drained and dropped.
    public static let maxFramesPerMessage = 16
}

extension WireProtocol {
    /// "v1.0" for a packed major*1000+minor version.
    public static func describe(_ version: UInt32) -> String {
        "v\(version / 1000).\(version % 1000)"
    }
}
