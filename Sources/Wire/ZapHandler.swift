// The ZeroMQ Authentication Protocol handler (rfc.zeromq.org/spec/27) of one context.
// libzmq asks it about every CURVE handshake on a socket with a ZAP domain; it answers
// 200 only when the client's long-term public key is in that domain's allow-list.
// Each CURVE server socket gets its own domain, so two servers in one process (the
// router's frontend and backend) can accept different keys.

import CZmq
import Foundation
import Logging

final class ZapHandler {
    static let endpoint = "inproc://zeromq.zap.01"

    private let lock = NSLock()
    private var allowLists: [String: Set<String>] = [:]
    private var stopping = false
    private let finished = DispatchSemaphore(value: 0)
    private let logger: Logger
    private var startError: Error?  // written by the thread before `bound` is signalled
    /// Refusals are logged at most once per `refusalLogIntervalMs` per reason (a peer knocking
    /// every 100 ms must not flood the journal); the line says how many were not logged.
    static let refusalLogIntervalMs: UInt64 = 10_000
    private var refusalLog = LogRateLimiter(intervalMs: refusalLogIntervalMs)

    /// Starts the handler thread; returns once its REP socket is bound, so no handshake
    /// can happen before the allow-list is enforced (without a bound handler libzmq would
    /// accept every CURVE client).
    init(context: ZmqContext) throws {
        logger = context.logger
        let bound = DispatchSemaphore(value: 0)
        // The thread holds only the raw context handle: the context's deinit must be able
        // to run (and stop this thread) when the last user reference goes away.
        let contextHandle = ContextHandle(raw: context.handle)
        let thread = Thread { [self] in
            let socket: ZmqSocket
            do {
                socket = try ZmqSocket(contextHandle: contextHandle.raw, owner: nil, rawType: ZMQ_REP, publicType: nil,
                                       lingerMs: 0)
                try socket.bind(Self.endpoint)
            } catch {
                startError = error
                bound.signal()
                finished.signal()
                return
            }
            bound.signal()
            serve(socket)
            socket.close()
            finished.signal()
        }
        thread.name = "zmq-zap"
        thread.start()
        bound.wait()
        if let startError { throw startError }
    }

    /// Sets (or with nil removes) the keys accepted on `domain`.
    func allow(_ keys: Set<String>?, domain: String) {
        lock.lock()
        allowLists[domain] = keys
        lock.unlock()
    }

    /// Stops the thread and waits for it (idempotent).
    func stop() {
        lock.lock()
        let already = stopping
        stopping = true
        lock.unlock()
        if !already { finished.wait() }
    }

    private var shouldStop: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopping
    }

    private func serve(_ socket: ZmqSocket) {
        while !shouldStop {
            // Short poll so stop() returns quickly; handshakes are rare. An error means the
            // context is being torn down: leave.
            guard let readable = try? socket.waitReadable(timeoutMs: 50) else { return }
            guard readable else { continue }
            guard let request = try? socket.receive() else { continue }
            let reply = answer(request)
            _ = try? socket.send(reply, dontWait: false)
        }
    }

    /// ZAP request: version, request id, domain, address, identity, mechanism, credentials...
    /// Reply: version, request id, status code, status text, user id, metadata.
    func answer(_ frames: [[UInt8]]) -> [[UInt8]] {
        let requestId = frames.count > 1 ? frames[1] : []
        func reply(_ code: String, _ text: String, user: String = "") -> [[UInt8]] {
            [Array("1.0".utf8), requestId, Array(code.utf8), Array(text.utf8), Array(user.utf8), []]
        }
        guard frames.count >= 6, frames[0] == Array("1.0".utf8) else {
            return reply("500", "malformed ZAP request")
        }
        let domain = String(decoding: frames[2], as: UTF8.self)
        let address = String(decoding: frames[3], as: UTF8.self)
        let mechanism = String(decoding: frames[5], as: UTF8.self)
        guard mechanism == "CURVE", frames.count >= 7, frames[6].count == 32 else {
            logRefusal("CURVE required", ["peer": "\(loggable(address))", "mechanism": "\(loggable(mechanism))"])
            return reply("400", "CURVE required")
        }
        let clientKey = Keys.z85(frames[6])
        lock.lock()
        let allowed = allowLists[domain]?.contains(clientKey) ?? false
        lock.unlock()
        guard allowed else {
            logRefusal("CURVE key not in the allow-list of this socket's role", [
                "peer": "\(loggable(address))", "client_key": "\(clientKey)", "domain": "\(loggable(domain))"])
            return reply("400", "client key not allowed")
        }
        return reply("200", "OK", user: clientKey)
    }

    private func logRefusal(_ reason: String, _ metadata: Logger.Metadata) {
        lock.lock()
        let skipped = refusalLog.admit(reason, now: MonotonicClock.nowMs())
        lock.unlock()
        guard let skipped else { return }
        var metadata = metadata
        if skipped > 0 { metadata["refusals_not_logged"] = "\(skipped)" }
        logger.warning("ZeroMQ peer refused: \(reason)", metadata: metadata)
    }
}

/// A libzmq context handle crossing to the ZAP thread (libzmq contexts are thread-safe).
private struct ContextHandle: @unchecked Sendable {
    let raw: UnsafeMutableRawPointer
}
