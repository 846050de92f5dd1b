import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// systemd's readiness protocol (sd_notify(3)) without libsystemd: one datagram such as
/// "READY=1" to the AF_UNIX socket named by $NOTIFY_SOCKET. A leading '@' names a socket in
/// the abstract namespace. Outside systemd (no variable) every call does nothing, so nodes
/// can always call it; `Type=notify` units then know the node is really ready.
public enum SystemdNotify {
    public enum NotifyError: Error, CustomStringConvertible, Equatable {
        case unsupportedAddress(String)
        case socket(String)

        public var description: String {
            switch self {
            case .unsupportedAddress(let a): return "NOTIFY_SOCKET=\(a): only absolute paths and @abstract names are supported"
            case .socket(let why): return "sd_notify: \(why)"
            }
        }
    }

    /// Sends `state` (newline-separated assignments). Returns false when there is no
    /// $NOTIFY_SOCKET (not started by systemd with Type=notify).
    @discardableResult
    public static func send(_ state: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Bool {
        guard let address = environment["NOTIFY_SOCKET"], !address.isEmpty else { return false }
        guard address.hasPrefix("/") || address.hasPrefix("@") else { throw NotifyError.unsupportedAddress(address) }
        var path = Array(address.utf8)
        if path[0] == UInt8(ascii: "@") { path[0] = 0 }   // abstract namespace: leading NUL, no terminator
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard path.count < capacity else { throw NotifyError.unsupportedAddress(address) }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, byte) in path.enumerated() { raw[i] = byte }
        }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + path.count)

        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw NotifyError.socket("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(state.utf8)
        let sent = withUnsafePointer(to: &addr) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, length) }
            }
        }
        guard sent == bytes.count else {
            throw NotifyError.socket("sendto \(address): \(String(cString: strerror(errno)))")
        }
        return true
    }

    /// The node serves: systemd finishes `systemctl start` and starts units ordered after it.
    @discardableResult
    public static func ready(status: String) throws -> Bool {
        try send("READY=1\nSTATUS=\(status)")
    }

    /// The node is draining: `systemctl status` shows it while the drain runs.
    @discardableResult
    public static func stopping(status: String = "draining") throws -> Bool {
        try send("STOPPING=1\nSTATUS=\(status)")
    }
}
