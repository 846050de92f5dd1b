// A small Swift layer over libzmq 4.3 (no draft API): a shared context, DEALER/ROUTER
// sockets with explicit queue bounds, multipart send/receive, zmq_poll, and CURVE.
//
// Threading: a ZmqContext may be shared by any threads; a ZmqSocket is owned by ONE
// thread (zmq sockets are not thread-safe): create, use and close it on that thread.

import CProtobufC
import CZmq
import Foundation
import Logging

/// A failed libzmq call, or a configuration the layer refuses.
public enum ZmqError: Error, CustomStringConvertible, Equatable {
    /// `call` (e.g. "zmq_bind(tcp://0.0.0.0:5555)") failed with errno `code`.
    case call(String, code: Int32)
    case closed
    case invalidConfig(String)

    public var description: String {
        switch self {
        case let .call(what, code):
            return "\(what) failed: \(String(cString: zmq_strerror(code))) (errno \(code))"
        case .closed:
            return "ZeroMQ socket used after close()"
        case let .invalidConfig(why):
            return "invalid ZeroMQ configuration: \(why)"
        }
    }

    static func last(_ what: @autoclosure () -> String) -> ZmqError {
        .call(what(), code: zmq_errno())
    }
}

/// One libzmq context per process (it owns the I/O thread and the ZAP handler).
/// Thread-safe. Close every socket before `terminate()`, which otherwise waits for them.
public final class ZmqContext {
    let handle: UnsafeMutableRawPointer
    let logger: Logger
    private let lock = NSLock()
    private var zap: ZapHandler?
    private var terminated = false
    private var nextDomain = 0

    public init(logger: Logger = Logger(label: "mambaformer.wire")) throws {
        guard let h = zmq_ctx_new() else { throw ZmqError.last("zmq_ctx_new") }
        handle = h
        self.logger = logger
    }

    deinit { terminate() }

    /// Stops the ZAP handler and terminates the context (idempotent).
    public func terminate() {
        lock.lock()
        let zap = self.zap
        self.zap = nil
        let wasTerminated = terminated
        terminated = true
        lock.unlock()
        if wasTerminated { return }
        zap?.stop()
        while zmq_ctx_term(handle) != 0 && zmq_errno() == EINTR {}
    }

    /// Registers a CURVE allow-list and returns the ZAP domain a server socket must use.
    /// Starts the context's ZAP handler on first use.
    func registerAllowList(_ keys: Set<String>) throws -> String {
        lock.lock()
        defer { lock.unlock() }
        guard !terminated else { throw ZmqError.closed }
        if zap == nil { zap = try ZapHandler(context: self) }
        nextDomain += 1
        let domain = "mambaformer.\(nextDomain)"
        zap?.allow(keys, domain: domain)
        return domain
    }

    func updateAllowList(_ keys: Set<String>, domain: String) {
        lock.lock()
        defer { lock.unlock() }
        zap?.allow(keys, domain: domain)
    }

    func unregister(domain: String) {
        lock.lock()
        defer { lock.unlock() }
        zap?.allow(nil, domain: domain)
    }
}

public enum ZmqSocketType: Sendable {
    case dealer, router

    var raw: Int32 {
        switch self {
        case .dealer: return ZMQ_DEALER
        case .router: return ZMQ_ROUTER
        }
    }
}

/// CURVE server settings: our key pair and the client public keys we accept (all Z85).
public struct CurveServerConfig: Sendable, Equatable {
    public var publicKey: String
    public var secretKey: String
    public var allowedClientKeys: Set<String>
    public init(publicKey: String, secretKey: String, allowedClientKeys: Set<String>) {
        self.publicKey = publicKey; self.secretKey = secretKey; self.allowedClientKeys = allowedClientKeys
    }
}

/// CURVE client settings: our key pair and the server's public key (all Z85).
public struct CurveClientConfig: Sendable, Equatable {
    public var publicKey: String
    public var secretKey: String
    public var serverKey: String
    public init(publicKey: String, secretKey: String, serverKey: String) {
        self.publicKey = publicKey; self.secretKey = secretKey; self.serverKey = serverKey
    }
}

public final class ZmqSocket {
    private var handle: UnsafeMutableRawPointer?
    public let type: ZmqSocketType?
    /// Keeps the context alive while the socket is open (zmq_ctx_term would wait for it);
    /// nil for the ZAP handler's own socket, which must not keep its context alive.
    private let context: ZmqContext?
    private var zapDomain: String?

    /// - sendHWM / receiveHWM: messages queued per peer before sends would block (explicit:
    ///   backpressure is the nodes' in-flight counts, the HWM is only a safety bound).
    /// - lingerMs: how long close() may wait to flush (the libzmq default −1 hangs shutdown).
    /// - sendTimeoutMs: the most a blocking send (`dontWait: false`) waits.
    /// ROUTER sockets get ZMQ_ROUTER_MANDATORY so a send to an unknown peer fails loudly.
    /// Inbound frames over `Limits.maxFrameBytes` (+ slack) make libzmq drop the peer.
    public convenience init(context: ZmqContext, type: ZmqSocketType, sendHWM: Int32 = 1000,
                            receiveHWM: Int32 = 1000, lingerMs: Int32 = 200, sendTimeoutMs: Int32 = 1000) throws {
        try self.init(contextHandle: context.handle, owner: context, rawType: type.raw, publicType: type,
                      sendHWM: sendHWM, receiveHWM: receiveHWM, lingerMs: lingerMs, sendTimeoutMs: sendTimeoutMs)
    }

    init(contextHandle: UnsafeMutableRawPointer, owner context: ZmqContext?, rawType: Int32,
         publicType: ZmqSocketType?, sendHWM: Int32 = 1000, receiveHWM: Int32 = 1000, lingerMs: Int32 = 200,
         sendTimeoutMs: Int32 = 1000) throws {
        guard let h = zmq_socket(contextHandle, rawType) else { throw ZmqError.last("zmq_socket") }
        handle = h
        self.type = publicType
        self.context = context
        do {
            try setInt(ZMQ_SNDHWM, sendHWM, "ZMQ_SNDHWM")
            try setInt(ZMQ_RCVHWM, receiveHWM, "ZMQ_RCVHWM")
            try setInt(ZMQ_LINGER, lingerMs, "ZMQ_LINGER")
            try setInt(ZMQ_SNDTIMEO, sendTimeoutMs, "ZMQ_SNDTIMEO")
            var maxSize = Int64(Limits.maxFrameBytes + 64 * 1024)
            try setRaw(ZMQ_MAXMSGSIZE, &maxSize, MemoryLayout<Int64>.size, "ZMQ_MAXMSGSIZE")
            if rawType == ZMQ_ROUTER { try setInt(ZMQ_ROUTER_MANDATORY, 1, "ZMQ_ROUTER_MANDATORY") }
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    /// Closes the socket (idempotent). Call it on the owning thread.
    public func close() {
        if let h = handle {
            zmq_close(h)
            handle = nil
        }
        if let domain = zapDomain {
            context?.unregister(domain: domain)
            zapDomain = nil
        }
    }

    // MARK: Options (set before bind/connect)

    /// The routing id a ROUTER peer sees for this socket (1–255 bytes, not starting with 0).
    public func setIdentity(_ id: [UInt8]) throws {
        guard (1...255).contains(id.count), id[0] != 0 else {
            throw ZmqError.invalidConfig("a routing identity must be 1–255 bytes and not start with a zero byte")
        }
        var id = id
        try setRaw(ZMQ_ROUTING_ID, &id, id.count, "ZMQ_ROUTING_ID")
    }

    /// Reconnect backoff: first retry after `ms`, doubling up to `maxMs`.
    public func setReconnectInterval(ms: Int32, maxMs: Int32) throws {
        try setInt(ZMQ_RECONNECT_IVL, ms, "ZMQ_RECONNECT_IVL")
        try setInt(ZMQ_RECONNECT_IVL_MAX, maxMs, "ZMQ_RECONNECT_IVL_MAX")
    }

    /// ZMTP-level heartbeats (PING/PONG): a connection silent for `timeoutMs` is dropped.
    public func setHeartbeat(ivlMs: Int32, timeoutMs: Int32) throws {
        try setInt(ZMQ_HEARTBEAT_IVL, ivlMs, "ZMQ_HEARTBEAT_IVL")
        try setInt(ZMQ_HEARTBEAT_TIMEOUT, timeoutMs, "ZMQ_HEARTBEAT_TIMEOUT")
    }

    /// A blocking receive (`dontWait: false`) returns nil after `ms` (−1: wait forever).
    public func setReceiveTimeout(ms: Int32) throws {
        try setInt(ZMQ_RCVTIMEO, ms, "ZMQ_RCVTIMEO")
    }

    /// Requires CURVE from every peer and accepts only `allowedClientKeys` (checked by the
    /// context's ZAP handler). Call before `bind`.
    public func enableCurveServer(_ c: CurveServerConfig) throws {
        guard !c.allowedClientKeys.isEmpty else {
            throw ZmqError.invalidConfig("CURVE server with an empty client allow-list would refuse every client")
        }
        try Keys.checkPair(publicKey: c.publicKey, secretKey: c.secretKey)
        for key in c.allowedClientKeys where !Keys.isValid(key) {
            throw ZmqError.invalidConfig("allowed client key \"\(key)\" is not a 40-character Z85 CURVE key")
        }
        guard let context else { throw ZmqError.invalidConfig("CURVE on an internal socket") }
        let domain = try context.registerAllowList(c.allowedClientKeys)
        zapDomain = domain
        try setString(ZMQ_ZAP_DOMAIN, domain, "ZMQ_ZAP_DOMAIN")
        try setInt(ZMQ_CURVE_SERVER, 1, "ZMQ_CURVE_SERVER")
        try setString(ZMQ_CURVE_SECRETKEY, c.secretKey, "ZMQ_CURVE_SECRETKEY")
    }

    /// Replaces the client keys this CURVE server socket accepts (a SIGHUP reload). Handshakes
    /// from now on are judged by the new list; connections already made stay until they drop.
    public func updateAllowList(_ keys: Set<String>) throws {
        guard let domain = zapDomain, let context else { throw ZmqError.invalidConfig("not a CURVE server socket") }
        guard !keys.isEmpty else { throw ZmqError.invalidConfig("an empty client allow-list would refuse every client") }
        for key in keys where !Keys.isValid(key) {
            throw ZmqError.invalidConfig("allowed client key \"\(key)\" is not a 40-character Z85 CURVE key")
        }
        context.updateAllowList(keys, domain: domain)
    }

    /// Talks CURVE to a server whose public key is `serverKey`. Call before `connect`.
    public func enableCurveClient(_ c: CurveClientConfig) throws {
        try Keys.checkPair(publicKey: c.publicKey, secretKey: c.secretKey)
        guard Keys.isValid(c.serverKey) else {
            throw ZmqError.invalidConfig("server key \"\(c.serverKey)\" is not a 40-character Z85 CURVE key")
        }
        try setString(ZMQ_CURVE_SERVERKEY, c.serverKey, "ZMQ_CURVE_SERVERKEY")
        try setString(ZMQ_CURVE_PUBLICKEY, c.publicKey, "ZMQ_CURVE_PUBLICKEY")
        try setString(ZMQ_CURVE_SECRETKEY, c.secretKey, "ZMQ_CURVE_SECRETKEY")
    }

    // MARK: Endpoints

    /// Binds and returns the endpoint actually bound (ZMQ_LAST_ENDPOINT), so
    /// "tcp://127.0.0.1:*" tells the caller its port.
    @discardableResult
    public func bind(_ endpoint: String) throws -> String {
        let h = try live()
        guard zmq_bind(h, endpoint) == 0 else { throw ZmqError.last("zmq_bind(\(endpoint))") }
        var buffer = [CChar](repeating: 0, count: 1024)
        var size = buffer.count
        guard zmq_getsockopt(h, ZMQ_LAST_ENDPOINT, &buffer, &size) == 0 else {
            throw ZmqError.last("zmq_getsockopt(ZMQ_LAST_ENDPOINT)")
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public func connect(_ endpoint: String) throws {
        let h = try live()
        guard zmq_connect(h, endpoint) == 0 else { throw ZmqError.last("zmq_connect(\(endpoint))") }
    }

    public func disconnect(_ endpoint: String) throws {
        let h = try live()
        guard zmq_disconnect(h, endpoint) == 0 else { throw ZmqError.last("zmq_disconnect(\(endpoint))") }
    }

    // MARK: Messages

    /// Sends one multipart message. Returns false, having sent nothing, when it would block
    /// (HWM reached; with `dontWait: false` after the send timeout) or when a ROUTER does
    /// not know the peer named by the first frame. Never blocks forever.
    public func send(_ frames: [[UInt8]], dontWait: Bool = true) throws -> Bool {
        let h = try live()
        guard !frames.isEmpty else { throw ZmqError.invalidConfig("cannot send a message with no frames") }
        let wait = dontWait ? ZMQ_DONTWAIT : 0
        for (i, frame) in frames.enumerated() {
            let more = i < frames.count - 1 ? ZMQ_SNDMORE : 0
            // Frames after the first are queued with the first (multipart messages are
            // atomic), so they cannot hit the HWM; block briefly rather than tear a message.
            let flags = (i == 0 ? wait : 0) | more
            while true {
                let rc = frame.withUnsafeBytes { zmq_send(h, $0.baseAddress, $0.count, flags) }
                if rc >= 0 { break }
                let e = zmq_errno()
                if e == EINTR { continue }
                if i == 0 && (e == EAGAIN || e == EHOSTUNREACH) { return false }
                throw ZmqError.call("zmq_send(frame \(i) of \(frames.count))", code: e)
            }
        }
        return true
    }

    /// Receives one multipart message, or nil when none is waiting (or, with
    /// `dontWait: false`, none came within the receive timeout). A message with more than
    /// `Limits.maxFramesPerMessage` frames is drained and returned as `[]` (no frames),
    /// so the caller can count it without holding it in memory.
    public func receive(dontWait: Bool = true) throws -> [[UInt8]]? {
        let h = try live()
        var frames: [[UInt8]] = []
        frames.reserveCapacity(4)  // one allocation for the usual 1–3 frames
        var tooMany = false
        var msg = zmq_msg_t()
        zmq_msg_init(&msg)
        defer { zmq_msg_close(&msg) }
        var first = true
        while true {
            let rc = zmq_msg_recv(&msg, h, first && dontWait ? ZMQ_DONTWAIT : 0)
            if rc < 0 {
                let e = zmq_errno()
                if e == EINTR { continue }
                if first && e == EAGAIN { return nil }
                throw ZmqError.call("zmq_msg_recv", code: e)
            }
            first = false
            if frames.count < Limits.maxFramesPerMessage {
                let size = zmq_msg_size(&msg)
                if size == 0 {
                    frames.append([])
                } else {
                    let data = zmq_msg_data(&msg)!
                    frames.append([UInt8](UnsafeRawBufferPointer(start: data, count: size)))
                }
            } else {
                tooMany = true
            }
            if zmq_msg_more(&msg) == 0 { break }
        }
        return tooMany ? [] : frames
    }

    // MARK: Internals

    /// The raw handle, for zmq_poll and the ZAP handler (same module only).
    func live() throws -> UnsafeMutableRawPointer {
        guard let h = handle else { throw ZmqError.closed }
        return h
    }

    private func setInt(_ option: Int32, _ value: Int32, _ name: String) throws {
        var v = value
        try setRaw(option, &v, MemoryLayout<Int32>.size, name)
    }

    private func setString(_ option: Int32, _ value: String, _ name: String) throws {
        var bytes = Array(value.utf8)
        try setRaw(option, &bytes, bytes.count, name)
    }

    private func setRaw(_ option: Int32, _ value: UnsafeRawPointer, _ size: Int, _ name: String) throws {
        let h = try live()
        guard zmq_setsockopt(h, option, value, size) == 0 else { throw ZmqError.last("zmq_setsockopt(\(name))") }
    }
}

public enum ZmqPoll {
    /// Waits up to `timeoutMs` (−1: forever, 0: just check) until one of `sockets` has a
    /// message; returns a readable flag per socket (all false on timeout or signal).
    public static func poll(_ sockets: [ZmqSocket], timeoutMs: Int) throws -> [Bool] {
        // The poll items live on the stack: this runs once per message in every node loop.
        try withUnsafeTemporaryAllocation(of: zmq_pollitem_t.self, capacity: sockets.count) { items in
            for (i, s) in sockets.enumerated() {
                items[i] = zmq_pollitem_t(socket: try s.live(), fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
            }
            let rc = zmq_poll(items.baseAddress, Int32(sockets.count), timeoutMs)
            if rc < 0 {
                let e = zmq_errno()
                if e == EINTR { return [Bool](repeating: false, count: sockets.count) }
                throw ZmqError.call("zmq_poll", code: e)
            }
            return items.map { $0.revents & Int16(ZMQ_POLLIN) != 0 }
        }
    }
}

extension ZmqSocket {
    /// Waits up to `timeoutMs` (−1: forever) for a message on this socket alone.
    public func waitReadable(timeoutMs: Int) throws -> Bool {
        var item = zmq_pollitem_t(socket: try live(), fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
        let rc = zmq_poll(&item, 1, timeoutMs)
        if rc < 0 {
            let e = zmq_errno()
            if e == EINTR { return false }
            throw ZmqError.call("zmq_poll", code: e)
        }
        return item.revents & Int16(ZMQ_POLLIN) != 0
    }
}

// MARK: - Envelopes over sockets

extension ZmqSocket {
    /// Sends one envelope: a ROUTER as [identity, payload], a DEALER as [payload].
    /// False when it would block or the ROUTER does not know `identity`. The envelope is
    /// packed straight into the ZeroMQ message (no intermediate byte array).
    public func send(_ envelope: Envelope, to identity: [UInt8]?) throws -> Bool {
        let h = try live()
        var payloadFlags: Int32 = ZMQ_DONTWAIT
        if let identity {
            while true {
                let rc = identity.withUnsafeBytes { zmq_send(h, $0.baseAddress, $0.count, ZMQ_DONTWAIT | ZMQ_SNDMORE) }
                if rc >= 0 { break }
                let e = zmq_errno()
                if e == EINTR { continue }
                if e == EAGAIN || e == EHOSTUNREACH { return false }
                throw ZmqError.call("zmq_send(identity)", code: e)
            }
            payloadFlags = 0  // the rest of a started multipart message is always accepted
        }
        var msg = zmq_msg_t()
        envelope.withCMessage { c in
            let size = protobuf_c_message_get_packed_size(c)
            zmq_msg_init_size(&msg, size)
            if size > 0 { _ = protobuf_c_message_pack(c, zmq_msg_data(&msg).assumingMemoryBound(to: UInt8.self)) }
        }
        while true {
            if zmq_msg_send(&msg, h, payloadFlags) >= 0 { return true }  // libzmq owns msg now
            let e = zmq_errno()
            if e == EINTR { continue }
            zmq_msg_close(&msg)
            if identity == nil && e == EAGAIN { return false }
            throw ZmqError.call("zmq_msg_send(envelope)", code: e)
        }
    }

    /// Receives one message and decodes its envelope; nil when nothing is waiting.
    /// Never throws on garbage: a bad frame comes back as `.failure` (with the sender's
    /// identity on a ROUTER when there is one) so the node can count and log it.
    /// The payload is decoded in place from libzmq's buffer (no intermediate copy).
    public func receiveEnvelope(dontWait: Bool = true) throws
        -> (identity: [UInt8]?, result: Result<Envelope, WireError>)?
    {
        try receiveEnvelopeAndPeer(dontWait: dontWait).map { ($0.identity, $0.result) }
    }

    /// As `receiveEnvelope`, with the sender's CURVE public key (Z85) as the ZAP handler
    /// accepted it for this connection (libzmq's `User-Id` property): nil without CURVE.
    public func receiveEnvelopeAndPeer(dontWait: Bool = true) throws
        -> (identity: [UInt8]?, result: Result<Envelope, WireError>, peerKey: String?)?
    {
        let h = try live()
        var peerKey: String?
        let expected = type == .router ? 2 : 1
        var identity: [UInt8]?
        var result: Result<Envelope, WireError> = .failure(.unexpectedFrames(count: 0, expected: expected))
        var count = 0
        var msg = zmq_msg_t()
        zmq_msg_init(&msg)
        defer { zmq_msg_close(&msg) }
        while true {
            let rc = zmq_msg_recv(&msg, h, count == 0 && dontWait ? ZMQ_DONTWAIT : 0)
            if rc < 0 {
                let e = zmq_errno()
                if e == EINTR { continue }
                if count == 0 && e == EAGAIN { return nil }
                throw ZmqError.call("zmq_msg_recv", code: e)
            }
            count += 1
            let bytes = UnsafeRawBufferPointer(start: zmq_msg_data(&msg), count: zmq_msg_size(&msg))
            if count == 1 && type == .router {
                identity = [UInt8](bytes)
            } else if count == expected {
                if let user = zmq_msg_gets(&msg, "User-Id") { peerKey = String(cString: user) }
                do {
                    result = .success(try Envelope.decode(bytes))
                } catch let error as WireError {
                    result = .failure(error)
                } catch {
                    result = .failure(.malformed(bytes: bytes.count))
                }
            }
            if zmq_msg_more(&msg) == 0 { break }
        }
        guard count == expected else {
            return (identity, .failure(.unexpectedFrames(count: count, expected: expected)), peerKey)
        }
        return (identity, result, peerKey)
    }
}
