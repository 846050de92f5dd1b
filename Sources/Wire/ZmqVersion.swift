import CZmq

/// The libzmq the process is linked against, as "major.minor.patch".
/// Logged at start-up: CURVE and socket options differ across libzmq releases.
public func zmqLibraryVersion() -> String {
    var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
    zmq_version(&major, &minor, &patch)
    return "\(major).\(minor).\(patch)"
}
