// Connection events of a socket (zmq_socket_monitor), so a node can log what libzmq
// otherwise hides: a peer connecting or dropping, and above all a CURVE handshake
// refused (wrong server key, key not in the allow-list), which a client would retry
// silently forever.

import CZmq
import Foundation

public enum ZmqSocketEvent: Equatable, Sendable, CustomStringConvertible {
    case connected(endpoint: String)
    case accepted(endpoint: String)
    case disconnected(endpoint: String)
    case handshakeSucceeded(endpoint: String)
    /// The peer's credentials were refused; `status` is the ZAP status code (e.g. 400).
    case handshakeFailedAuth(endpoint: String, status: UInt32)
    /// Mechanism mismatch (plain text vs CURVE), bad keys, or a malformed handshake.
    case handshakeFailed(endpoint: String, errno: UInt32)
    /// Any other event libzmq reports (connect retried, listening...), by its ZMQ_EVENT_* value.
    case other(event: UInt16, value: UInt32, endpoint: String)

    public var description: String {
        switch self {
        case let .connected(e): return "connected to \(e)"
        case let .accepted(e): return "accepted a connection on \(e)"
        case let .disconnected(e): return "disconnected from \(e)"
        case let .handshakeSucceeded(e): return "handshake succeeded on \(e)"
        case let .handshakeFailedAuth(e, status):
            return "handshake on \(e) refused by authentication (ZAP status \(status)): check the CURVE keys and allow-list"
        case let .handshakeFailed(e, code):
            return "handshake on \(e) failed (errno \(code)): check that both sides agree on CURVE and its keys"
        case let .other(event, value, e): return "ZeroMQ event 0x\(String(event, radix: 16)) (value \(value)) on \(e)"
        }
    }
}

/// Receives the events of one socket. Owned by the same thread as that socket; poll
/// `socket` together with it and call `events()` when it is readable.
public final class ZmqMonitor {
    public let socket: ZmqSocket
    private static let counter = Counter()

    /// Starts monitoring `target` (connection, disconnection and handshake events).
    public init(context: ZmqContext, target: ZmqSocket) throws {
        let endpoint = "inproc://mambaformer.monitor.\(Self.counter.next())"
        let events = ZMQ_EVENT_CONNECTED | ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED
            | ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
            | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
        guard zmq_socket_monitor(try target.live(), endpoint, events) == 0 else {
            throw ZmqError.last("zmq_socket_monitor(\(endpoint))")
        }
        socket = try ZmqSocket(contextHandle: context.handle, owner: context, rawType: ZMQ_PAIR, publicType: nil,
                               lingerMs: 0)
        try socket.connect(endpoint)
    }

    deinit { close() }

    public func close() { socket.close() }

    /// The events waiting now (never blocks).
    public func events() throws -> [ZmqSocketEvent] {
        var out: [ZmqSocketEvent] = []
        while let frames = try socket.receive() {
            guard frames.count == 2, frames[0].count == 6 else { continue }
            let event = UInt16(frames[0][0]) | UInt16(frames[0][1]) << 8
            let value = (0..<4).reduce(UInt32(0)) { $0 | UInt32(frames[0][2 + $1]) << (8 * UInt32($1)) }
            let endpoint = String(decoding: frames[1], as: UTF8.self)
            switch Int32(event) {
            case ZMQ_EVENT_CONNECTED: out.append(.connected(endpoint: endpoint))
            case ZMQ_EVENT_ACCEPTED: out.append(.accepted(endpoint: endpoint))
            case ZMQ_EVENT_DISCONNECTED: out.append(.disconnected(endpoint: endpoint))
            case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: out.append(.handshakeSucceeded(endpoint: endpoint))
            case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH: out.append(.handshakeFailedAuth(endpoint: endpoint, status: value))
            case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL, ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                out.append(.handshakeFailed(endpoint: endpoint, errno: value))
            default: out.append(.other(event: event, value: value, endpoint: endpoint))
            }
        }
        return out
    }

    private final class Counter {
        private let lock = NSLock()
        private var value = 0
        func next() -> Int {
            lock.lock()
            defer { lock.unlock() }
            value += 1
            return value
        }
    }
}
