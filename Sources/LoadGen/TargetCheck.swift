import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The guard that keeps a load test on this machine: every address the target's host
/// resolves to must be loopback (127.0.0.0/8, ::1, or ::ffff:127.x.y.z) unless the operator
/// says otherwise. Checking every address, not the first, means a name that also resolves to
/// a public address is refused.
public enum TargetCheck {
    /// Throws `remoteTargetRefused` unless `allowRemote`; returns the resolved addresses.
    @discardableResult
    public static func check(_ url: URL, allowRemote: Bool) throws -> [String] {
        guard let scheme = url.scheme?.lowercased(), scheme == "http", let rawHost = url.host, !rawHost.isEmpty else {
            throw LoadGenError.invalidTarget(url.absoluteString)
        }
        let host = rawHost.hasPrefix("[") && rawHost.hasSuffix("]") ? String(rawHost.dropFirst().dropLast()) : rawHost
        if allowRemote { return [] }
        let addresses = try resolve(host)
        guard !addresses.isEmpty else { throw LoadGenError.unresolvableHost(host: host, reason: "no address") }
        if !addresses.allSatisfy(isLoopback) {
            throw LoadGenError.remoteTargetRefused(host: host, addresses: addresses)
        }
        return addresses
    }

    /// True for 127.0.0.0/8, ::1 and IPv4-mapped loopback, given numeric text.
    public static func isLoopback(_ address: String) -> Bool {
        var v4 = in_addr()
        if inet_pton(AF_INET, address, &v4) == 1 {
            return UInt32(bigEndian: v4.s_addr) >> 24 == 127
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, address, &v6) == 1 {
            let bytes = withUnsafeBytes(of: v6) { Array($0) }
            if bytes[0..<15].allSatisfy({ $0 == 0 }) && bytes[15] == 1 { return true }            // ::1
            let mapped = bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF
            return mapped && bytes[12] == 127                                                        // ::ffff:127.x
        }
        return false
    }

    /// Numeric addresses of a host name (getaddrinfo, both families).
    static func resolve(_ host: String) throws -> [String] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, nil, &hints, &result)
        guard rc == 0 else {
            throw LoadGenError.unresolvableHost(host: host, reason: String(cString: gai_strerror(rc)))
        }
        defer { freeaddrinfo(result) }
        var out: [String] = []
        var node = result
        while let info = node {
            var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if let addr = info.pointee.ai_addr,
               getnameinfo(addr, info.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0 {
                let text = String(cString: buffer)
                if !out.contains(text) { out.append(text) }
            }
            node = info.pointee.ai_next
        }
        return out
    }
}
