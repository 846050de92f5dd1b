import Foundation
import XCTest
@testable import Wire

final class KeysTests: XCTestCase {
    var directory: String!

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "mf-keys-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }

    private func mode(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }

    func testGeneratedPairsAreValidZ85AndDistinct() throws {
        let a = try Keys.generateCurveKeyPair(), b = try Keys.generateCurveKeyPair()
        for key in [a.publicKey, a.secretKey, b.publicKey, b.secretKey] {
            XCTAssertEqual(key.count, 40)
            XCTAssertTrue(Keys.isValid(key), key)
        }
        XCTAssertNotEqual(a.secretKey, b.secretKey)
        XCTAssertEqual(try Keys.publicKey(fromSecret: a.secretKey), a.publicKey)
        XCTAssertNoThrow(try Keys.checkPair(publicKey: a.publicKey, secretKey: a.secretKey))
        XCTAssertThrowsError(try Keys.checkPair(publicKey: b.publicKey, secretKey: a.secretKey))
        XCTAssertFalse(Keys.isValid(String(a.publicKey.dropLast())))
        XCTAssertFalse(Keys.isValid(String(repeating: " ", count: 40)))
        XCTAssertFalse(Keys.isValid(String(repeating: "\"", count: 40)))  // not in the Z85 alphabet
    }

    func testWriteKeyPairWritesSecretWith0600AndPublicKey() throws {
        let files = try Keys.writeKeyPair(name: "router", directory: directory)
        XCTAssertEqual(files.secretKeyPath, directory + "/router.key")
        XCTAssertEqual(files.publicKeyPath, directory + "/router.pub")
        XCTAssertEqual(try mode(files.secretKeyPath), 0o600)
        let secret = try Keys.readKey(atPath: files.secretKeyPath)
        let pub = try Keys.readKey(atPath: files.publicKeyPath)
        XCTAssertEqual(pub, files.publicKey)
        XCTAssertEqual(try Keys.publicKey(fromSecret: secret), pub)
        XCTAssertEqual(try String(contentsOfFile: files.publicKeyPath, encoding: .utf8), pub + "\n")
    }

    func testWriteKeyPairRefusesToOverwriteUnlessForced() throws {
        let first = try Keys.writeKeyPair(name: "gw", directory: directory)
        XCTAssertThrowsError(try Keys.writeKeyPair(name: "gw", directory: directory)) {
            XCTAssertEqual($0 as? KeyError, .fileExists(first.secretKeyPath))
        }
        XCTAssertEqual(try Keys.readKey(atPath: first.publicKeyPath), first.publicKey)
        let second = try Keys.writeKeyPair(name: "gw", directory: directory, overwrite: true)
        XCTAssertNotEqual(second.publicKey, first.publicKey)
        XCTAssertEqual(try mode(second.secretKeyPath), 0o600)
        XCTAssertThrowsError(try Keys.writeKeyPair(name: "a/b", directory: directory))
        XCTAssertThrowsError(try Keys.writeKeyPair(name: "x", directory: directory + "/missing"))
    }

    func testReadKeyRejectsBadFiles() throws {
        let path = directory + "/bad.pub"
        try "hello\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Keys.readKey(atPath: path)) { error in
            XCTAssertTrue("\(error)".contains(path), "\(error)")
        }
        XCTAssertThrowsError(try Keys.readKey(atPath: directory + "/absent.pub"))
    }

    func testSecretKeysReadableByOthersAreRefused() throws {
        try Keys.writeKeyPair(name: "node", directory: directory)
        let secret = directory + "/node.key"
        XCTAssertNoThrow(try Keys.readSecretKey(atPath: secret))
        for mode in [0o644, 0o640, 0o604, 0o660] {
            XCTAssertEqual(chmod(secret, mode_t(mode)), 0)
            XCTAssertThrowsError(try Keys.readSecretKey(atPath: secret)) { error in
                XCTAssertEqual(error as? KeyError, .exposedSecret(path: secret, mode: UInt16(mode)))
                XCTAssertTrue("\(error)".contains("chmod 600"), "\(error)")
            }
        }
    }

    /// `mambaformer keygen` end to end, on the binary built next to the test bundle.
    func testKeygenCommandWritesTheFiles() throws {
        let binary = Bundle.main.bundleURL.appendingPathComponent("mambaformer").path
        let candidates = [binary] + [Bundle(for: Self.self).bundleURL.deletingLastPathComponent()
            .appendingPathComponent("mambaformer").path]
        let executable = try XCTUnwrap(candidates.first { FileManager.default.isExecutableFile(atPath: $0) },
                                       "build the mambaformer executable first (swift build --build-tests)")
        func run(_ args: [String]) throws -> (status: Int32, output: String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: executable)
            p.arguments = args
            let pipe = Pipe()
            p.standardOutput = pipe
            p.standardError = pipe
            try p.run()
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return (p.terminationStatus, String(decoding: data, as: UTF8.self))
        }
        let ok = try run(["keygen", "expert-emamba-1", "--dir", directory])
        XCTAssertEqual(ok.status, 0, ok.output)
        let secret = try Keys.readKey(atPath: directory + "/expert-emamba-1.key")
        let pub = try Keys.readKey(atPath: directory + "/expert-emamba-1.pub")
        XCTAssertEqual(try Keys.publicKey(fromSecret: secret), pub)
        XCTAssertEqual(try mode(directory + "/expert-emamba-1.key"), 0o600)
        XCTAssertTrue(ok.output.contains(pub), "keygen should print the public key: \(ok.output)")
        XCTAssertFalse(ok.output.contains(secret), "keygen must not print the secret key")

        let again = try run(["keygen", "expert-emamba-1", "--dir", directory])
        XCTAssertNotEqual(again.status, 0)
        XCTAssertTrue(again.output.contains("--force"), again.output)
        XCTAssertEqual(try Keys.readKey(atPath: directory + "/expert-emamba-1.pub"), pub)
        XCTAssertEqual(try run(["keygen", "expert-emamba-1", "--dir", directory, "--force"]).status, 0)
        XCTAssertNotEqual(try Keys.readKey(atPath: directory + "/expert-emamba-1.pub"), pub)
    }
}
