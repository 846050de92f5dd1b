import ClusterConfig
import Foundation
import Glibc
import XCTest

/// sd_notify over a datagram socket the test owns (path and abstract namespace).
final class SystemdNotifyTests: XCTestCase {
    /// Binds a datagram socket at `address` (leading '@': abstract) and returns its fd.
    func bindDatagram(_ address: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        var path = Array(address.utf8)
        if path.first == UInt8(ascii: "@") { path[0] = 0 }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in path.enumerated() { raw[i] = b } }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + path.count)
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard rc == 0 else { throw NSError(domain: "bind", code: Int(errno)) }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    func receive(_ fd: Int32) -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = recv(fd, &buffer, buffer.count, 0)
        return n > 0 ? String(decoding: buffer.prefix(n), as: UTF8.self) : nil
    }

    func testReadyOnAPathSocket() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mf-notify-\(UUID().uuidString.prefix(8))").path
        let fd = try bindDatagram(path)
        defer { close(fd); unlink(path) }
        XCTAssertTrue(try SystemdNotify.send("READY=1\nSTATUS=router listening", environment: ["NOTIFY_SOCKET": path]))
        XCTAssertEqual(receive(fd), "READY=1\nSTATUS=router listening")
        XCTAssertTrue(try SystemdNotify.send("STOPPING=1", environment: ["NOTIFY_SOCKET": path]))
        XCTAssertEqual(receive(fd), "STOPPING=1")
    }

    func testAbstractNamespaceSocket() throws {
        let name = "@mf-notify-test-\(UUID().uuidString.prefix(8))"
        let fd = try bindDatagram(name)
        defer { close(fd) }
        XCTAssertTrue(try SystemdNotify.send("READY=1", environment: ["NOTIFY_SOCKET": name]))
        XCTAssertEqual(receive(fd), "READY=1")
    }

    func testWithoutSystemdNothingIsSent() throws {
        XCTAssertFalse(try SystemdNotify.send("READY=1", environment: [:]))
    }

    func testRelativeAddressIsRefusedAndDeadSocketReported() {
        XCTAssertThrowsError(try SystemdNotify.send("READY=1", environment: ["NOTIFY_SOCKET": "relative/path"]))
        let gone = FileManager.default.temporaryDirectory.appendingPathComponent("mf-gone-\(UUID().uuidString.prefix(8))").path
        XCTAssertThrowsError(try SystemdNotify.send("READY=1", environment: ["NOTIFY_SOCKET": gone])) { error in
            XCTAssertTrue("\(error)".contains(gone), "\(error)")
        }
    }
}
