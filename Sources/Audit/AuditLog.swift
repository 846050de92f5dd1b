import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// A value behind a lock (the queue-full warning's last time).
final class LockedValue<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ value: T) { self.value = value }
    func withLock<R>(_ body: (inout T) -> R) -> R { lock.lock(); defer { lock.unlock() }; return body(&value) }
}

/// The audit log's writer: records go through a bounded queue to one thread that seals each
/// (`AuditChain`) and hands it to the OS with write(2); `append` returns once that is done, so
/// the caller can hold the answer's last byte until its line is written.
///
/// Failures: a failed write makes the log *failed* (`isHealthy` false); it is cut back off the
/// file (ftruncate), so the chain never holds half a line. A full queue refuses only the
/// record that found it full.
/// While failed, records are refused at once; every second the thread tries to write an
/// `audit_resumed` line (saying how many records were refused), and once that succeeds the log
/// is healthy again. Whether requests go on meanwhile is the gateway's decision.
///
/// Rotation: when a line would take the file past `rotateBytes`, the file is renamed to
/// `PATH.<first seq, 12 digits>` and a new one begun; the chain continues, so
/// `audit verify PATH.* PATH` (the shell sorts the names oldest first) checks them all.
// Sendable: the queue and state are guarded by `condition`; the file is the thread's alone.
public final class AuditLog: @unchecked Sendable {
    public struct Options: Sendable {
        public var rotateBytes = 64 << 20
        public var queueLimit = 1024
        /// How often the chain's head goes to `logger` (the journal), off the file.
        public var headInterval: Duration = .seconds(60)
        public var retryInterval: Duration = .seconds(1)
        public init() {}
    }

    public let path: String
    private let key: AuditKey
    private let options: Options
    private let logger: Logger

    private struct Pending { let fields: String; let done: @Sendable (Bool) -> Void }
    private let condition = NSCondition()
    private var queue: [Pending] = []
    private var healthy = true
    private var stopping = false
    private var refusedWhileFailed = 0
    private var thread: Thread?
    private let lastQueueFullLog = LockedValue(ContinuousClock.now - .seconds(10))

    // The writer thread's own state.
    private var fd: Int32 = -1
    private var size = 0
    private var nextSeq: UInt64 = 0
    private var prev = AuditChain.genesis
    private var fileFirstSeq: UInt64 = 0
    private var lastHeadLogged: ContinuousClock.Instant = .now

    /// Opens (or creates, mode 600) the log and continues its chain from the last line, which
    /// must verify under `key`.
    public init(path: String, key: AuditKey, options: Options = Options(), logger: Logger) throws {
        self.path = path
        self.key = key
        self.options = options
        self.logger = logger
        try openFile()
        try recoverHead()
        // The thread keeps the log alive until `close()`.
        let thread = Thread { self.run() }
        thread.name = "audit-log"
        self.thread = thread
        thread.start()
    }

    /// Whether records are being written (false after a failed write or a full queue, until a write succeeds).
    public var isHealthy: Bool { condition.withLock { healthy } }

    /// The chain's head: the next line's sequence number and the last line's MAC.
    public var head: (nextSeq: UInt64, mac: String) { condition.withLock { (nextSeq, prev) } }

    /// Seals and writes one record (its JSON fields without braces). True once write(2) has
    /// taken the whole line; false if the log is failed, the queue full, or the write failed.
    public func append(_ fields: String) async -> Bool {
        await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let (accepted, queueFull) = condition.withLock { () -> (Bool, Bool) in
                guard healthy, !stopping else {
                    refusedWhileFailed += 1
                    return (false, false)
                }
                // A full queue refuses this record only (its request gets the log's failure
                // answer); the lines queued before it are still written, and the log stays up.
                guard queue.count < options.queueLimit else { return (false, true) }
                queue.append(Pending(fields: fields, done: { continuation.resume(returning: $0) }))
                condition.signal()
                return (true, false)
            }
            if queueFull, ContinuousClock.now - lastQueueFullLog.withLock({ $0 }) >= .seconds(1) {
                lastQueueFullLog.withLock { $0 = .now }
                logger.error("audit log queue full (\(options.queueLimit) lines): the disk does not keep up; records are refused")
            }
            if !accepted { continuation.resume(returning: false) }
        }
    }

    /// Writes what is queued, logs the head, closes the file.
    public func close() {
        condition.withLock { stopping = true; condition.signal() }
        while condition.withLock({ thread != nil }) { usleep(1000) }
    }

    // MARK: The writer thread

    private func run() {
        var lastRetry = ContinuousClock.now
        while true {
            condition.lock()
            while queue.isEmpty, !stopping {
                _ = condition.wait(until: Date(timeIntervalSinceNow: 0.25))
                if !healthy || ContinuousClock.now - lastHeadLogged >= options.headInterval { break }
            }
            let batch = queue
            queue.removeAll()
            let done = stopping && batch.isEmpty
            let failed = !healthy
            condition.unlock()

            if failed, ContinuousClock.now - lastRetry >= options.retryInterval {
                lastRetry = .now
                tryResume()
            }
            for pending in batch { pending.done(write(pending.fields)) }
            if ContinuousClock.now - lastHeadLogged >= options.headInterval || done { logHead() }
            if done { break }
        }
        if fd >= 0 { Glibc.close(fd); fd = -1 }
        condition.withLock { thread = nil }
    }

    /// One sealed line onto the file, rotating first when it would not fit.
    private func write(_ fields: String) -> Bool {
        if !condition.withLock({ healthy }) {
            condition.withLock { refusedWhileFailed += 1 }
            return false
        }
        let (line, mac) = AuditChain.seal(seq: nextSeq, prev: prev, fields: fields, key: key)
        let bytes = Array(line.utf8)
        if size > 0, size + bytes.count > options.rotateBytes, !rotate() { return fail("rotation failed") }
        guard writeAll(bytes) else { return fail(String(cString: strerror(errno))) }
        size += bytes.count
        condition.withLock { nextSeq += 1; prev = mac }
        return true
    }

    /// write(2) until every byte is taken; on failure the file is cut back to where it was.
    private func writeAll(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 {
                let saved = errno
                if offset > 0 { _ = ftruncate(fd, off_t(size)) }
                errno = saved
                return false
            }
            offset += n
        }
        return true
    }

    private func fail(_ why: String) -> Bool {
        condition.withLock {
            if healthy { logger.error("audit log \(path) cannot be written: \(why)") }
            healthy = false
            refusedWhileFailed += 1
        }
        return false
    }

    /// While failed: write a line saying how many records were lost; success ends the failure.
    private func tryResume() {
        let lost = condition.withLock { refusedWhileFailed }
        let fields = #""event":"audit_resumed","time":"\#(AuditLog.timestamp(Date()))","records_refused":\#(lost)"#
        let (line, mac) = AuditChain.seal(seq: nextSeq, prev: prev, fields: fields, key: key)
        let bytes = Array(line.utf8)
        if size > 0, size + bytes.count > options.rotateBytes, !rotate() { return }
        guard writeAll(bytes) else { return }
        size += bytes.count
        condition.withLock {
            nextSeq += 1; prev = mac
            refusedWhileFailed = 0
            healthy = true
        }
        logger.notice("audit log writable again", metadata: ["records_refused": "\(lost)"])
    }

    private func rotate() -> Bool {
        var rotated = path + "." + String(format: "%012llu", fileFirstSeq)
        // Never over an older file (a chain restarted by hand can repeat numbers).
        while FileManager.default.fileExists(atPath: rotated) { rotated += "-" + String(UInt32.random(in: 0...UInt32.max), radix: 16) }
        guard rename(path, rotated) == 0 else { return false }
        // The open descriptor follows the renamed file: it stays usable until the new one opens.
        let old = fd
        do { try openFile() } catch {
            // Put the full file back and keep appending to it; the next line tries again.
            _ = rename(rotated, path)
            fd = old
            var st = stat()
            size = fstat(fd, &st) == 0 ? Int(st.st_size) : size
            return false
        }
        Glibc.close(old)
        fileFirstSeq = condition.withLock { nextSeq }
        logger.notice("audit log rotated", metadata: ["file": "\(rotated)", "next_seq": "\(fileFirstSeq)"])
        return true
    }

    private func logHead() {
        lastHeadLogged = .now
        let (seq, mac) = head
        guard seq > 0 else { return }
        // Off the file: cutting lines off the end of the log leaves this behind in the journal.
        logger.notice("audit chain head", metadata: ["audit_seq": "\(seq - 1)", "audit_mac": "\(mac)"])
    }

    private func openFile() throws {
        fd = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw AuditError.cannotOpen(path: path, errno: errno) }
        var st = stat()
        size = fstat(fd, &st) == 0 ? Int(st.st_size) : 0
    }

    /// The chain continues from the last line written: the current file's, or, when it is empty
    /// (a rotation just happened), the newest rotated file's. That line must verify.
    private func recoverHead() throws {
        if size > 0 {
            do {
                let last = try Self.lastLine(of: path, size: size, key: key)
                nextSeq = last.seq + 1
                prev = last.mac
                fileFirstSeq = Self.firstSeq(of: path) ?? last.seq
            } catch AuditError.tailDoesNotVerify {
                try setDamagedFileAside()
            }
            return
        }
        if let newest = Self.rotatedFiles(of: path).last,
           let bytes = (try? FileManager.default.attributesOfItem(atPath: newest))?[.size] as? Int, bytes > 0 {
            let last = try Self.lastLine(of: newest, size: bytes, key: key)
            nextSeq = last.seq + 1
            prev = last.mac
            fileFirstSeq = nextSeq
        }
    }

    /// The current file ends in a line that does not verify (a write torn by a power cut, or an
    /// edit). Nothing is deleted: the file is kept as `PATH.<first seq>-damaged` for the
    /// investigation, the chain continues from its last line that verifies, and the new file
    /// opens with an `audit_recovered` record naming the damaged file. `audit verify` then flags
    /// the damaged lines where they are. If no line of the file verifies, the key is most likely
    /// not the one that wrote it: refused, so that a wrong key never starts a new chain.
    private func setDamagedFileAside() throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw AuditError.logUnreadable(path: path) }
        let bytes = Array(data)
        var verified: (seq: UInt64, prev: String, mac: String, end: Int)?
        var start = 0
        while start < bytes.count, let end = bytes[start...].firstIndex(of: 0x0A) {
            if let opened = AuditChain.open(Array(bytes[start..<end]), key: key) {
                verified = (opened.seq, opened.prev, opened.mac, end + 1)
            }
            start = end + 1
        }
        guard let last = verified else { throw AuditError.tailDoesNotVerify(path: path) }
        var damaged = path + "." + String(format: "%012llu", Self.firstSeq(of: path) ?? last.seq) + "-damaged"
        while FileManager.default.fileExists(atPath: damaged) { damaged += "-" + String(UInt32.random(in: 0...UInt32.max), radix: 16) }
        Glibc.close(fd)
        fd = -1
        guard rename(path, damaged) == 0 else { throw AuditError.cannotOpen(path: path, errno: errno) }
        try openFile()
        nextSeq = last.seq + 1
        prev = last.mac
        fileFirstSeq = nextSeq
        let name = URL(fileURLWithPath: damaged).lastPathComponent
        let fields = #""event":"audit_recovered","time":"\#(AuditLog.timestamp(Date()))","damaged_file":"\#(name)","#
            + #""continues_after_seq":\#(last.seq),"unverified_bytes":\#(bytes.count - last.end)"#
        let (line, mac) = AuditChain.seal(seq: nextSeq, prev: prev, fields: fields, key: key)
        guard writeAll(Array(line.utf8)) else { throw AuditError.cannotOpen(path: path, errno: errno) }
        size += line.utf8.count
        nextSeq += 1
        prev = mac
        logger.critical("""
            audit log \(path) ended in lines that do not verify (\(bytes.count - last.end) bytes): kept as \(damaged); \
            the chain continues after sequence number \(last.seq). Investigate with `mambaformer audit verify`
            """)
    }

    /// The rotated files of `path` (`PATH.<12 digits>[-suffix]`), oldest first.
    static func rotatedFiles(of path: String) -> [String] {
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent().path
        let prefix = url.lastPathComponent + "."
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.filter { name in
            name.hasPrefix(prefix) && name.dropFirst(prefix.count).prefix(12).allSatisfy(\.isNumber)
                && name.dropFirst(prefix.count).count >= 12
        }.sorted().map { folder + "/" + $0 }
    }

    /// The last line of a file, verified. Reads backwards in growing windows, so a long line
    /// (with `security.allow_audit_text`, a prompt near the size limit) is still found.
    static func lastLine(of path: String, size: Int, key: AuditKey) throws -> (seq: UInt64, prev: String, mac: String) {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw AuditError.logUnreadable(path: path) }
        defer { try? handle.close() }
        var window = min(size, 1 << 20)
        while true {
            try handle.seek(toOffset: UInt64(size - window))
            let bytes = Array(handle.readData(ofLength: window))
            guard bytes.last == 0x0A else { throw AuditError.tailDoesNotVerify(path: path) }
            let body = bytes.dropLast()
            if let newline = body.lastIndex(of: 0x0A) {
                guard let opened = AuditChain.open(Array(body[(newline + 1)...]), key: key) else { throw AuditError.tailDoesNotVerify(path: path) }
                return opened
            }
            if window == size {
                guard let opened = AuditChain.open(Array(body), key: key) else { throw AuditError.tailDoesNotVerify(path: path) }
                return opened
            }
            window = min(size, window * 4)
        }
    }

    /// The first line's sequence number (names the file when it is rotated).
    static func firstSeq(of path: String) -> UInt64? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        let head = Array(handle.readData(ofLength: 64))
        let prefix = Array(#"{"seq":"#.utf8)
        guard head.starts(with: prefix) else { return nil }
        return UInt64(String(decoding: head.dropFirst(prefix.count).prefix { $0 >= 0x30 && $0 <= 0x39 }, as: UTF8.self))
    }

    /// RFC 3339 UTC with milliseconds, as the lines carry it.
    public static func timestamp(_ date: Date) -> String {
        let ms = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        var t = time_t(ms / 1000)
        var parts = tm()
        gmtime_r(&t, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
                      Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(ms % 1000))
    }
}
