import Foundation
import XCTest
@testable import Wire

final class CurveTests: XCTestCase {
    var context: ZmqContext!

    override func setUpWithError() throws { context = try ZmqContext() }
    override func tearDown() { context.terminate() }

    /// A CURVE dealer; connected to `endpoint` when one is given (pass nil to attach a monitor first).
    private func curveClient(server: (publicKey: String, secretKey: String),
                             keys: (publicKey: String, secretKey: String), endpoint: String?) throws -> ZmqSocket {
        let s = try ZmqSocket(context: context, type: .dealer)
        try s.enableCurveClient(CurveClientConfig(publicKey: keys.publicKey, secretKey: keys.secretKey,
                                                  serverKey: server.publicKey))
        if let endpoint { try s.connect(endpoint) }
        return s
    }

    func testOnlyListedClientKeysGetThrough() throws {
        let serverKeys = try Keys.generateCurveKeyPair()
        let listed = try Keys.generateCurveKeyPair()
        let unlisted = try Keys.generateCurveKeyPair()

        let server = try ZmqSocket(context: context, type: .router)
        defer { server.close() }
        try server.enableCurveServer(CurveServerConfig(publicKey: serverKeys.publicKey, secretKey: serverKeys.secretKey,
                                                       allowedClientKeys: [listed.publicKey]))
        let endpoint = try server.bind("tcp://127.0.0.1:*")

        let intruder = try curveClient(server: serverKeys, keys: unlisted, endpoint: endpoint)
        let plain = try ZmqSocket(context: context, type: .dealer)
        try plain.connect(endpoint)
        // A listed key pair talking to an impostor's server key: the CURVE handshake
        // itself fails (the server cannot prove it holds that key's secret).
        let impostorKeys = try Keys.generateCurveKeyPair()
        let forger = try curveClient(server: impostorKeys, keys: listed, endpoint: endpoint)
        let friend = try curveClient(server: serverKeys, keys: listed, endpoint: endpoint)
        defer { friend.close(); forger.close(); plain.close(); intruder.close() }

        let hello = Envelope(.ready(Ready(pool: .emamba, modelId: "m", replicaId: "intruder", capacity: 1, softwareVersion: "x")))
        // The refused clients' messages sit in their own queues: the handshake never completes.
        _ = try intruder.send(hello, to: nil)
        _ = try plain.send(hello, to: nil)
        _ = try forger.send(hello, to: nil)
        let ready = Envelope(.ready(Ready(pool: .et5, modelId: "m", replicaId: "friend", capacity: 1, softwareVersion: "x")))
        XCTAssertTrue(try friend.send(ready, to: nil))

        // The listed client talks, both ways.
        var fromFriend: (identity: [UInt8]?, result: Result<Envelope, WireError>)?
        let deadline = Date().addingTimeInterval(10)
        while fromFriend == nil && Date() < deadline {
            if try ZmqPoll.poll([server], timeoutMs: 100)[0] { fromFriend = try server.receiveEnvelope() }
        }
        let got = try XCTUnwrap(fromFriend, "the listed client's message never arrived")
        XCTAssertEqual(try got.result.get(), ready)
        XCTAssertTrue(try server.send(Envelope(.heartbeat(Heartbeat(load: 2))), to: got.identity))
        XCTAssertTrue(try ZmqPoll.poll([friend], timeoutMs: 5000)[0])
        XCTAssertEqual(try friend.receiveEnvelope()?.result, .success(Envelope(.heartbeat(Heartbeat(load: 2)))))

        // Nothing else arrives: give the refused handshakes (and their reconnects) time.
        let quietUntil = Date().addingTimeInterval(1.5)
        while Date() < quietUntil {
            if try ZmqPoll.poll([server], timeoutMs: 100)[0] {
                let m = try server.receive()
                XCTFail("a refused client got a message through: \(String(describing: m))")
            }
        }
        // And the refused clients never get a reply path either.
        XCTAssertEqual(try ZmqPoll.poll([intruder, plain, forger], timeoutMs: 0), [false, false, false])
    }

    /// Collects `monitor`'s events until `until` holds or 5 s pass.
    private func collect(_ monitor: ZmqMonitor, until: ([ZmqSocketEvent]) -> Bool) throws -> [ZmqSocketEvent] {
        var events: [ZmqSocketEvent] = []
        let deadline = Date().addingTimeInterval(5)
        while !until(events) && Date() < deadline {
            if try ZmqPoll.poll([monitor.socket], timeoutMs: 50)[0] { events += try monitor.events() }
        }
        return events
    }

    func testMonitorsReportRefusedHandshakesOnBothSides() throws {
        let serverKeys = try Keys.generateCurveKeyPair()
        let listed = try Keys.generateCurveKeyPair(), unlisted = try Keys.generateCurveKeyPair()
        let server = try ZmqSocket(context: context, type: .router)
        try server.enableCurveServer(CurveServerConfig(publicKey: serverKeys.publicKey, secretKey: serverKeys.secretKey,
                                                       allowedClientKeys: [listed.publicKey]))
        let serverMonitor = try ZmqMonitor(context: context, target: server)
        let endpoint = try server.bind("tcp://127.0.0.1:*")
        // Every monitor is attached before its socket connects: a handshake that completes
        // before the monitor exists is never reported (this raced under load).
        let intruder = try curveClient(server: serverKeys, keys: unlisted, endpoint: nil)
        let intruderMonitor = try ZmqMonitor(context: context, target: intruder)
        let plain = try ZmqSocket(context: context, type: .dealer)
        let plainMonitor = try ZmqMonitor(context: context, target: plain)
        let friend = try curveClient(server: serverKeys, keys: listed, endpoint: nil)
        let friendMonitor = try ZmqMonitor(context: context, target: friend)
        defer {
            for m in [serverMonitor, intruderMonitor, plainMonitor, friendMonitor] { m.close() }
            for s in [server, intruder, plain, friend] { s.close() }
        }
        try intruder.connect(endpoint)
        try plain.connect(endpoint)
        try friend.connect(endpoint)

        func refusedAuth(_ e: [ZmqSocketEvent]) -> Bool {
            e.contains { if case .handshakeFailedAuth(_, 400) = $0 { return true } else { return false } }
        }
        func failed(_ e: [ZmqSocketEvent]) -> Bool {
            e.contains { if case .handshakeFailed = $0 { return true } else { return false } }
        }
        func succeeded(_ e: [ZmqSocketEvent]) -> Bool {
            e.contains { if case .handshakeSucceeded = $0 { return true } else { return false } }
        }
        let serverEvents = try collect(serverMonitor) { refusedAuth($0) && failed($0) && succeeded($0) }
        XCTAssertTrue(refusedAuth(serverEvents), "server did not report the unlisted key: \(serverEvents)")
        XCTAssertTrue(failed(serverEvents), "server did not report the plain-text client: \(serverEvents)")
        XCTAssertTrue(succeeded(serverEvents), "server did not report the listed client: \(serverEvents)")
        let intruderEvents = try collect(intruderMonitor, until: refusedAuth)
        XCTAssertTrue(refusedAuth(intruderEvents), "the refused client was not told: \(intruderEvents)")
        XCTAssertFalse(succeeded(intruderEvents))
        let plainEvents = try collect(plainMonitor) { !$0.isEmpty && !succeeded($0) && (failed($0) || $0.count > 3) }
        XCTAssertFalse(succeeded(plainEvents), "\(plainEvents)")
        let friendEvents = try collect(friendMonitor, until: succeeded)
        XCTAssertTrue(succeeded(friendEvents), "\(friendEvents)")
        for e in serverEvents + intruderEvents { XCTAssertFalse(e.description.isEmpty) }
    }

    func testTwoServersInOneContextKeepSeparateAllowLists() throws {
        let keysA = try Keys.generateCurveKeyPair(), keysB = try Keys.generateCurveKeyPair()
        let clientA = try Keys.generateCurveKeyPair(), clientB = try Keys.generateCurveKeyPair()
        let serverA = try ZmqSocket(context: context, type: .router)
        let serverB = try ZmqSocket(context: context, type: .router)
        defer { serverA.close(); serverB.close() }
        try serverA.enableCurveServer(CurveServerConfig(publicKey: keysA.publicKey, secretKey: keysA.secretKey,
                                                        allowedClientKeys: [clientA.publicKey]))
        try serverB.enableCurveServer(CurveServerConfig(publicKey: keysB.publicKey, secretKey: keysB.secretKey,
                                                        allowedClientKeys: [clientB.publicKey]))
        let endpointA = try serverA.bind("tcp://127.0.0.1:*")
        let endpointB = try serverB.bind("tcp://127.0.0.1:*")
        // clientB is allowed on B only: it reaches B, not A.
        let bOnA = try curveClient(server: keysA, keys: clientB, endpoint: endpointA)
        let bOnB = try curveClient(server: keysB, keys: clientB, endpoint: endpointB)
        defer { bOnA.close(); bOnB.close() }
        XCTAssertTrue(try bOnA.send([[1]]))
        XCTAssertTrue(try bOnB.send([[2]]))
        XCTAssertEqual(try receiveWithin(serverB)?.last, [2])
        XCTAssertNil(try receiveWithin(serverA, timeoutMs: 1000))
    }

    func testZapHandlerAnswersPerRFC27() throws {
        let client = try Keys.generateCurveKeyPair()
        let zapContext = try ZmqContext()  // a separate context: only `answer` is used
        let zap = try ZapHandler(context: zapContext)
        defer { zap.stop(); zapContext.terminate() }
        zap.allow([client.publicKey], domain: "d")
        let raw = try XCTUnwrap(Keys.decode(client.publicKey))
        func request(_ domain: String, _ mechanism: String, _ key: [UInt8]) -> [[UInt8]] {
            [Array("1.0".utf8), Array("7".utf8), Array(domain.utf8), Array("127.0.0.1".utf8), [],
             Array(mechanism.utf8), key]
        }
        let ok = zap.answer(request("d", "CURVE", raw))
        XCTAssertEqual(ok.count, 6)
        XCTAssertEqual(ok[1], Array("7".utf8))
        XCTAssertEqual(ok[2], Array("200".utf8))
        XCTAssertEqual(ok[4], Array(client.publicKey.utf8))
        XCTAssertEqual(zap.answer(request("other", "CURVE", raw))[2], Array("400".utf8))
        XCTAssertEqual(zap.answer(request("d", "NULL", []))[2], Array("400".utf8))
        XCTAssertEqual(zap.answer(request("d", "CURVE", [UInt8](repeating: 1, count: 32)))[2], Array("400".utf8))
        XCTAssertEqual(zap.answer([[1]])[2], Array("500".utf8))
    }

    /// The ZAP thread must not keep its context alive: dropping the last reference
    /// (without terminate()) stops the thread and frees the context.
    func testContextWithCurveIsFreedWhenReleased() throws {
        weak var weakContext: ZmqContext?
        try {
            let ctx = try ZmqContext()
            weakContext = ctx
            let pair = try Keys.generateCurveKeyPair(), client = try Keys.generateCurveKeyPair()
            let socket = try ZmqSocket(context: ctx, type: .router)
            try socket.enableCurveServer(CurveServerConfig(publicKey: pair.publicKey, secretKey: pair.secretKey,
                                                           allowedClientKeys: [client.publicKey]))
            _ = try socket.bind("tcp://127.0.0.1:*")
            socket.close()
        }()
        XCTAssertNil(weakContext, "the context leaked (a reference cycle through the ZAP thread?)")
    }

    func testCurveConfigIsValidated() throws {
        let pair = try Keys.generateCurveKeyPair(), other = try Keys.generateCurveKeyPair()
        let socket = try ZmqSocket(context: context, type: .router)
        defer { socket.close() }
        XCTAssertThrowsError(try socket.enableCurveServer(CurveServerConfig(
            publicKey: pair.publicKey, secretKey: pair.secretKey, allowedClientKeys: [])))
        XCTAssertThrowsError(try socket.enableCurveServer(CurveServerConfig(
            publicKey: other.publicKey, secretKey: pair.secretKey, allowedClientKeys: [other.publicKey]))) {
            XCTAssertEqual($0 as? KeyError, .mismatchedPair)
        }
        XCTAssertThrowsError(try socket.enableCurveServer(CurveServerConfig(
            publicKey: pair.publicKey, secretKey: pair.secretKey, allowedClientKeys: ["not a key"])))
        XCTAssertThrowsError(try socket.enableCurveClient(CurveClientConfig(
            publicKey: pair.publicKey, secretKey: pair.secretKey, serverKey: String(pair.publicKey.dropLast()))))
    }
}
