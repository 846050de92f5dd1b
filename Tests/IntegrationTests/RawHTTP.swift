import Foundation
#if canImport(Glibc)
import Glibc
#endif

// MARK: - A raw TCP client

/// Requests as exact bytes, for tests that must send what no HTTP library would.
enum RawHTTP {
    /// `METHOD target HTTP/1.1` with Host, Content-Length (when there is a body) and `headers`.
    static func request(_ method: String, _ target: String, headers: [String] = [], body: [UInt8] = []) -> [UInt8] {
        var head = ["\(method) \(target) HTTP/1.1", "Host: 127.0.0.1"] + headers
        if !body.isEmpty || method == "POST" { head.append("Content-Length: \(body.count)") }
        return Array((head.joined(separator: "\r\n") + "\r\n\r\n").utf8) + body
    }

    /// One request on a fresh connection, and its reply.
    static func exchange(port: Int, _ bytes: [UInt8], timeout: Double = 30) throws -> RawReply {
        let connection = try RawConnection(port: port)
        defer { connection.close() }
        connection.send(bytes)
        return connection.readReply(timeout: timeout)
    }

    /// Waits until the gateway's /readyz says ready with these replica counts.
    static func waitReady(port: Int, emamba: Int, et5: Int, timeout: Double = 60) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let reply = try? exchange(port: port, request("GET", "/readyz"), timeout: 5),
               reply.status == 200, reply.body.contains("\"emamba\":\(emamba)"), reply.body.contains("\"et5\":\(et5)") {
                return true
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
        return false
    }
}

/// What came back on a raw connection.
struct RawReply {
    var status: Int?
    var head = ""
    var body = ""
    /// From connecting to the reply being complete (or the connection closing).
    var seconds: Double = 0
    var closed = false
    var timedOut = false

    var errorCode: String? {
        let object = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        return (object?["error"] as? [String: Any])?["code"] as? String
    }

    var summary: String {
        "status \(status.map(String.init) ?? "none") after \(String(format: "%.0f", seconds * 1000)) ms"
            + (closed ? ", closed" : "") + (timedOut ? ", timed out" : "") + "\n\(head)\n\(body.prefix(500))"
    }
}

/// One TCP connection that sends exactly the bytes a test gives, when it says, and reads one
/// HTTP response back. Blocking POSIX calls with receive timeouts: nothing here can hang.
final class RawConnection: @unchecked Sendable {
    let fd: Int32
    let opened = Date()
    private var isClosed = false

    enum Failure: Error { case socket(Int32), connect(Int32) }

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure.socket(errno) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            let error = errno
            Glibc.close(fd)
            throw Failure.connect(error)
        }
        // A safety net: no recv blocks longer than this, whatever the caller's loop does.
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close() }

    func close() {
        if !isClosed { Glibc.close(fd); isClosed = true }
    }

    /// Sends everything; false once the peer closed or reset (no SIGPIPE).
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    /// Sends one byte per `interval`, stopping early when the server answers or closes.
    func dribble(_ bytes: [UInt8], every interval: Double) {
        for byte in bytes {
            if readable(within: interval) { return }
            if !send([byte]) { return }
        }
    }

    /// True if the peer closes (EOF or reset) within `seconds`, ignoring anything it still sends.
    func closesWithin(_ seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while deadline.timeIntervalSinceNow > 0 {
            guard readable(within: deadline.timeIntervalSinceNow) else { return false }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return true }
        }
        return false
    }

    func readable(within seconds: Double) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, Int32(seconds * 1000)) > 0
    }

    /// Reads one response (head, then Content-Length bytes) or until the peer closes.
    func readReply(timeout: Double) -> RawReply {
        var reply = RawReply()
        var data: [UInt8] = []
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            if let (head, bodyStart) = Self.splitHead(data) {
                reply.head = head
                reply.status = head.split(separator: " ").dropFirst().first.flatMap { Int($0) }
                let length = head.split(separator: "\r\n").compactMap { line -> Int? in
                    let parts = line.split(separator: ":", maxSplits: 1)
                    guard parts.count == 2, parts[0].lowercased() == "content-length" else { return nil }
                    return Int(parts[1].trimmingCharacters(in: .whitespaces))
                }.first
                if let length, data.count - bodyStart >= length {
                    reply.body = String(decoding: data[bodyStart..<(bodyStart + length)], as: UTF8.self)
                    break
                }
                reply.body = String(decoding: data[bodyStart...], as: UTF8.self)
            }
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0, readable(within: min(remaining, 2)) else {
                if remaining <= 0 { reply.timedOut = true; break }
                continue
            }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { reply.closed = true; break }   // closed or reset
            data += buffer[0..<n]
        }
        reply.seconds = Date().timeIntervalSince(opened)
        return reply
    }

    static func splitHead(_ data: [UInt8]) -> (String, Int)? {
        let marker: [UInt8] = [13, 10, 13, 10]
        guard data.count >= 4 else { return nil }
        for i in 0...(data.count - 4) where data[i] == 13 && Array(data[i..<(i + 4)]) == marker {
            return (String(decoding: data[..<i], as: UTF8.self), i + 4)
        }
        return nil
    }
}
