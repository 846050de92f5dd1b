// CURVE keys (Curve25519, as Z85 text: 40 characters for 32 bytes) and their files.
// `mambaformer keygen NAME` writes NAME.key (the secret key, mode 0600) and NAME.pub
// (the public key, shareable): one Z85 key per file, newline-terminated.

import CZmq
import Foundation

public enum KeyError: Error, CustomStringConvertible, Equatable {
    case generationFailed(String)
    case invalidKey(path: String?, why: String)
    case mismatchedPair
    case fileExists(String)
    case io(path: String, why: String)
    case exposedSecret(path: String, mode: UInt16)

    public var description: String {
        switch self {
        case let .generationFailed(why):
            return "could not generate a CURVE key pair: \(why)"
        case let .invalidKey(path, why):
            return (path.map { "\($0): " } ?? "") + "not a CURVE key: \(why)"
        case .mismatchedPair:
            return "the CURVE public key does not belong to the secret key"
        case let .fileExists(path):
            return "\(path) already exists; pass --force to overwrite it"
        case let .io(path, why):
            return "\(path): \(why)"
        case let .exposedSecret(path, mode):
            return "\(path): a secret key must be readable by its owner only (mode \(String(mode, radix: 8)), "
                + "expected 600): run `chmod 600 \(path)`"
        }
    }
}

public enum Keys {
    /// A fresh key pair from libzmq (libsodium underneath).
    public static func generateCurveKeyPair() throws -> (publicKey: String, secretKey: String) {
        var pub = [CChar](repeating: 0, count: 41)
        var sec = [CChar](repeating: 0, count: 41)
        guard zmq_curve_keypair(&pub, &sec) == 0 else {
            throw KeyError.generationFailed(ZmqError.last("zmq_curve_keypair").description)
        }
        return (cString(pub), cString(sec))
    }

    /// True for 40 Z85 characters that decode to 32 bytes.
    public static func isValid(_ z85: String) -> Bool {
        decode(z85) != nil
    }

    /// The public key belonging to a secret key.
    public static func publicKey(fromSecret secret: String) throws -> String {
        guard isValid(secret) else { throw KeyError.invalidKey(path: nil, why: "expected 40 Z85 characters") }
        var pub = [CChar](repeating: 0, count: 41)
        guard zmq_curve_public(&pub, secret) == 0 else {
            throw KeyError.invalidKey(path: nil, why: ZmqError.last("zmq_curve_public").description)
        }
        return cString(pub)
    }

    /// Throws unless both keys are valid and belong together.
    public static func checkPair(publicKey: String, secretKey: String) throws {
        guard isValid(publicKey) else { throw KeyError.invalidKey(path: nil, why: "public key is not 40 Z85 characters") }
        guard try self.publicKey(fromSecret: secretKey) == publicKey else { throw KeyError.mismatchedPair }
    }

    /// Reads a key file written by `writeKeyPair` (surrounding whitespace ignored).
    public static func readKey(atPath path: String) throws -> String {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw KeyError.io(path: path, why: "cannot read: \(error.localizedDescription)")
        }
        let key = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard isValid(key) else {
            throw KeyError.invalidKey(path: path, why: "expected one 40-character Z85 key")
        }
        return key
    }

    /// Reads a secret key file, refusing one that its group or others may read or write
    /// (as ssh does): a leaked secret key lets anyone impersonate this node.
    public static func readSecretKey(atPath path: String) throws -> String {
        var info = stat()
        guard stat(path, &info) == 0 else { throw KeyError.io(path: path, why: String(cString: strerror(errno))) }
        let mode = UInt16(info.st_mode & 0o777)
        guard mode & 0o077 == 0 else { throw KeyError.exposedSecret(path: path, mode: mode) }
        return try readKey(atPath: path)
    }

    /// Generates a key pair and writes `<directory>/<name>.key` (secret, mode 0600, created
    /// with that mode so it is never readable by others) and `<directory>/<name>.pub`.
    /// Refuses to overwrite existing files unless `overwrite`.
    @discardableResult
    public static func writeKeyPair(name: String, directory: String, overwrite: Bool = false) throws
        -> (publicKeyPath: String, secretKeyPath: String, publicKey: String)
    {
        guard !name.isEmpty, !name.contains("/") else {
            throw KeyError.io(path: name, why: "a key name must be non-empty and contain no '/'")
        }
        let dir = URL(fileURLWithPath: directory)
        let secretPath = dir.appendingPathComponent(name + ".key").path
        let publicPath = dir.appendingPathComponent(name + ".pub").path
        if !overwrite {
            for path in [secretPath, publicPath] where FileManager.default.fileExists(atPath: path) {
                throw KeyError.fileExists(path)
            }
        }
        let pair = try generateCurveKeyPair()
        try write(pair.secretKey + "\n", to: secretPath, mode: 0o600)
        try write(pair.publicKey + "\n", to: publicPath, mode: 0o644)
        return (publicPath, secretPath, pair.publicKey)
    }

    // MARK: Internals

    /// Z85 text of 32 raw key bytes (ZAP hands the client key over raw).
    static func z85(_ bytes: [UInt8]) -> String {
        var out = [CChar](repeating: 0, count: bytes.count * 5 / 4 + 1)
        guard bytes.count % 4 == 0, zmq_z85_encode(&out, bytes, bytes.count) != nil else { return "" }
        return cString(out)
    }

    static func decode(_ z85: String) -> [UInt8]? {
        guard z85.utf8.count == 40 else { return nil }
        var out = [UInt8](repeating: 0, count: 32)
        guard zmq_z85_decode(&out, z85) != nil else { return nil }
        return out
    }

    private static func cString(_ chars: [CChar]) -> String {
        String(decoding: chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func write(_ text: String, to path: String, mode: mode_t) throws {
        // Replace atomically-enough: unlink then create exclusively with the final mode, so
        // a secret never sits in a file that was once world-readable.
        unlink(path)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode)
        guard fd >= 0 else { throw KeyError.io(path: path, why: String(cString: strerror(errno))) }
        defer { close(fd) }
        _ = fchmod(fd, mode)  // the umask may have narrowed it; .pub stays readable, .key stays 0600
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else { throw KeyError.io(path: path, why: String(cString: strerror(errno))) }
    }
}
