import Crypto
import Foundation

// The audit trail's format: one JSON object per line, each sealed by a keyed MAC over its own
// text, which includes the previous line's MAC:
//
//     {"seq":41,"prev":"<MAC of line 40>",...the record's fields...,"mac":"<HMAC-SHA-256>"}
//
// The MAC covers every byte before `,"mac":`. Editing a line breaks its MAC; removing or
// reordering lines breaks the next line's `prev` and `seq`; recomputing the chain needs the
// key. Only cutting lines off the end leaves a valid chain, which is why the gateway also
// writes the chain's head to its own log (the journal) every minute.

/// The secret behind the trail. Two keys are derived from it, so that the one that checks the
/// chain (`chain`) is not the one that hashes prompts and answers (`text`).
public struct AuditKey: Sendable {
    let chain: SymmetricKey
    let text: SymmetricKey

    public init(secret: [UInt8]) {
        let master = SymmetricKey(data: secret)
        func derive(_ label: String) -> SymmetricKey {
            SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(label.utf8), using: master)))
        }
        chain = derive("mambaformer audit chain v1")
        text = derive("mambaformer audit text v1")
    }

    /// Reads a key file: at least 32 bytes (surrounding whitespace ignored, so
    /// `openssl rand -hex 32 > FILE` works), readable by its owner only.
    public static func load(path: String) throws -> AuditKey {
        guard let data = FileManager.default.contents(atPath: path) else { throw AuditError.keyUnreadable(path: path) }
        if let mode = (try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int, mode & 0o077 != 0 {
            throw AuditError.keyTooOpen(path: path, mode: mode)
        }
        var bytes = Array(data)
        while let last = bytes.last, last == 0x0A || last == 0x0D || last == 0x20 { bytes.removeLast() }
        while let first = bytes.first, first == 0x0A || first == 0x0D || first == 0x20 { bytes.removeFirst() }
        guard bytes.count >= 32 else { throw AuditError.keyTooShort(path: path, bytes: bytes.count) }
        return AuditKey(secret: bytes)
    }

    /// HMAC-SHA-256 of `text` under the text key, in hex: what the trail stores instead of a
    /// prompt or an answer. Without the key, short texts cannot be recovered by trying them.
    public func hash(_ text: String) -> String {
        hex(HMAC<SHA256>.authenticationCode(for: Data(text.utf8), using: self.text))
    }

    func mac(_ bytes: some DataProtocol) -> String {
        hex(HMAC<SHA256>.authenticationCode(for: bytes, using: chain))
    }
}

func hex(_ mac: some Sequence<UInt8>) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    for b in mac { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
    return String(decoding: out, as: UTF8.self)
}

/// Sealing and checking lines.
public enum AuditChain {
    /// `prev` of the first line of a chain.
    public static let genesis = String(repeating: "0", count: 64)
    static let macMarker = Array(#","mac":""#.utf8)

    /// The line (with its newline) for a record whose JSON fields (`"a":1,"b":"x"`, no braces)
    /// are `fields`, and its MAC.
    public static func seal(seq: UInt64, prev: String, fields: String, key: AuditKey) -> (line: String, mac: String) {
        let body = #"{"seq":\#(seq),"prev":"\#(prev)""# + (fields.isEmpty ? "" : "," + fields)
        let mac = key.mac(Array(body.utf8))
        return (body + #","mac":"\#(mac)"}"# + "\n", mac)
    }

    /// A line's sequence number, `prev` and `mac`, if its MAC is right (nil: altered, or not a line).
    public static func open(_ line: [UInt8], key: AuditKey) -> (seq: UInt64, prev: String, mac: String)? {
        // ...,"mac":"<64 hex>"}
        guard line.count > macMarker.count + 66, line.last == UInt8(ascii: "}") else { return nil }
        let macStart = line.count - 66
        let markerStart = macStart - macMarker.count
        guard Array(line[markerStart..<macStart]) == macMarker, line[line.count - 2] == UInt8(ascii: "\"") else { return nil }
        let mac = String(decoding: line[macStart..<(line.count - 2)], as: UTF8.self)
        guard constantTimeEquals(Array(key.mac(line[0..<markerStart]).utf8), Array(mac.utf8)) else { return nil }
        guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
              let seq = (object["seq"] as? NSNumber)?.uint64Value, let prev = object["prev"] as? String else { return nil }
        return (seq, prev, mac)
    }

    static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in a.indices { diff |= a[i] ^ b[i] }
        return diff == 0
    }
}

/// What `AuditVerifier` found wrong, naming the file and line so an investigator can look.
public struct AuditFinding: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        /// The line's MAC is wrong: edited, or sealed with another key.
        case altered
        /// `seq` or `prev` do not follow the line before: lines removed, inserted or reordered.
        case brokenLink(expectedSeq: UInt64, foundSeq: UInt64)
        /// The chain does not start at a genesis line (earlier files missing, or lines cut off the start).
        case doesNotStartAtGenesis(firstSeq: UInt64)
        /// A head the gateway logged is not in the files: lines were cut off the end.
        case headMissing(seq: UInt64)
        /// The last line has no newline (a write cut short).
        case truncatedLine
    }
    public var file: String
    public var line: Int
    public var kind: Kind

    public init(file: String, line: Int, kind: Kind) { self.file = file; self.line = line; self.kind = kind }

    public var description: String {
        let place = "\(file):\(line)"
        switch kind {
        case .altered: return "\(place): the line's MAC does not match: it was altered (or sealed with another key)"
        case .brokenLink(let expected, let found):
            return "\(place): expected sequence number \(expected), found \(found): lines were removed, inserted or reordered before it"
        case .doesNotStartAtGenesis(let first):
            return "\(place): the chain starts at sequence number \(first), not 0: earlier lines or files are missing "
                + "(pass every file, oldest first, or --partial to check from here)"
        case .headMissing(let seq):
            return "\(place): the logged chain head \(seq) is not in the files: lines were cut off the end"
        case .truncatedLine: return "\(place): the last line is incomplete (no newline)"
        }
    }
}

/// Checks a trail: files in order (rotated ones oldest first, the current one last).
public struct AuditVerifier {
    public let key: AuditKey
    /// Accept a chain that starts after seq 0 (older files deleted under a retention policy).
    public var partial = false
    /// Heads (`seq` → MAC) taken from the gateway's log: each must be in the files.
    public var heads: [UInt64: String] = [:]

    public init(key: AuditKey) { self.key = key }

    public struct Summary: Equatable, Sendable { public var lines: Int; public var firstSeq: UInt64?; public var lastSeq: UInt64?; public var lastMac: String? }

    /// The first problem, or the summary of an intact chain.
    public func verify(paths: [String]) throws -> Result<Summary, AuditFinding> {
        var expected: (seq: UInt64, prev: String)?
        var summary = Summary(lines: 0)
        var headsLeft = heads
        var lastPlace = (file: paths.last ?? "", line: 0)
        for path in paths {
            guard let data = FileManager.default.contents(atPath: path) else { throw AuditError.logUnreadable(path: path) }
            let bytes = Array(data)
            var number = 0
            var start = 0
            while start < bytes.count {
                number += 1
                guard let end = bytes[start...].firstIndex(of: 0x0A) else {
                    return .failure(AuditFinding(file: path, line: number, kind: .truncatedLine))
                }
                let line = Array(bytes[start..<end])
                start = end + 1
                guard let opened = AuditChain.open(line, key: key) else {
                    return .failure(AuditFinding(file: path, line: number, kind: .altered))
                }
                if let want = expected {
                    if opened.seq != want.seq || opened.prev != want.prev {
                        return .failure(AuditFinding(file: path, line: number, kind: .brokenLink(expectedSeq: want.seq, foundSeq: opened.seq)))
                    }
                } else if opened.seq != 0 || opened.prev != AuditChain.genesis, !partial {
                    return .failure(AuditFinding(file: path, line: number, kind: .doesNotStartAtGenesis(firstSeq: opened.seq)))
                }
                if let head = headsLeft[opened.seq] {
                    guard head == opened.mac else { return .failure(AuditFinding(file: path, line: number, kind: .altered)) }
                    headsLeft[opened.seq] = nil
                }
                if summary.firstSeq == nil { summary.firstSeq = opened.seq }
                summary.lines += 1
                summary.lastSeq = opened.seq
                summary.lastMac = opened.mac
                expected = (opened.seq + 1, opened.mac)
                lastPlace = (path, number)
            }
        }
        // A logged head older than the first line checked (a partial check) says nothing.
        if let missing = headsLeft.keys.filter({ $0 >= (summary.firstSeq ?? 0) }).min() {
            return .failure(AuditFinding(file: lastPlace.file, line: lastPlace.line, kind: .headMissing(seq: missing)))
        }
        return .success(summary)
    }
}

public enum AuditError: Error, Equatable, CustomStringConvertible {
    case keyUnreadable(path: String)
    case keyTooOpen(path: String, mode: Int)
    case keyTooShort(path: String, bytes: Int)
    case logUnreadable(path: String)
    case cannotOpen(path: String, errno: Int32)
    /// The log's last line does not verify: the chain cannot be continued safely.
    case tailDoesNotVerify(path: String)

    public var description: String {
        switch self {
        case .keyUnreadable(let path):
            return "audit key file \(path) cannot be read (make one: openssl rand -hex 32 > \(path); chmod 600 \(path))"
        case .keyTooOpen(let path, let mode):
            return "audit key file \(path) may be read by others (mode \(String(mode, radix: 8))): chmod 600 \(path)"
        case .keyTooShort(let path, let bytes):
            return "audit key file \(path) holds \(bytes) bytes; it needs at least 32 (openssl rand -hex 32 > \(path))"
        case .logUnreadable(let path):
            return "audit log \(path) cannot be read"
        case .cannotOpen(let path, let errno):
            return "audit log \(path) cannot be opened for appending: \(String(cString: strerror(errno))) "
                + "(the gateway's user needs write access to the file and its folder)"
        case .tailDoesNotVerify(let path):
            return "no line of audit log \(path) verifies under audit.hmac_key_file: most likely the key is not the one that "
                + "wrote it (check with `mambaformer audit verify --key-file KEY \(path)`). Use the right key, or move the file "
                + "aside to start a new chain"
        }
    }
}
