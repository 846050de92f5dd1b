import Foundation
import XCTest
@testable import Wire

/// Polls `socket` until a message arrives or `timeoutMs` passes.
func receiveWithin(_ socket: ZmqSocket, timeoutMs: Int = 5000) throws -> [[UInt8]]? {
    let deadline = Date().addingTimeInterval(Double(timeoutMs) / 1000)
    while Date() < deadline {
        if try ZmqPoll.poll([socket], timeoutMs: 50)[0], let m = try socket.receive() { return m }
    }
    return nil
}

final class ZmqTests: XCTestCase {
    var context: ZmqContext!

    override func setUpWithError() throws { context = try ZmqContext() }
    override func tearDown() { context.terminate() }

    /// DEALER -> ROUTER and back, multipart frames both ways, envelopes both ways.
    /// `routerBinds: false` flips the topology (the DEALER binds, the ROUTER connects).
    private func exchange(endpoint: String, routerBinds: Bool = true) throws {
        let router = try ZmqSocket(context: context, type: .router)
        let dealer = try ZmqSocket(context: context, type: .dealer)
        defer { dealer.close(); router.close() }
        try dealer.setIdentity(Array("expert-1".utf8))
        let bound: String
        if routerBinds {
            bound = try router.bind(endpoint)
            try dealer.connect(bound)
        } else {
            bound = try dealer.bind(endpoint)
            try router.connect(bound)
        }

        // Dealer -> router: 3 frames (one empty, one large); the router sees [identity] + them.
        let big = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        XCTAssertTrue(try dealer.send([Array("hello".utf8), [], big], dontWait: false))
        let inbound = try XCTUnwrap(try receiveWithin(router), "router received nothing over \(bound)")
        XCTAssertEqual(inbound, [Array("expert-1".utf8), Array("hello".utf8), [], big])

        // Router -> dealer, addressed by identity.
        XCTAssertTrue(try router.send([Array("expert-1".utf8), Array("a".utf8), Array("bc".utf8)]))
        XCTAssertTrue(try dealer.waitReadable(timeoutMs: 5000))
        XCTAssertEqual(try dealer.receive(), [Array("a".utf8), Array("bc".utf8)])

        // Envelopes both ways through the convenience layer.
        let ready = Envelope(Samples.bodies[0])
        XCTAssertTrue(try dealer.send(ready, to: nil))
        XCTAssertTrue(try ZmqPoll.poll([router], timeoutMs: 5000)[0])
        let (identity, result) = try XCTUnwrap(try router.receiveEnvelope())
        XCTAssertEqual(identity, Array("expert-1".utf8))
        XCTAssertEqual(try result.get(), ready)

        let span = Envelope(Samples.bodies[11])
        XCTAssertTrue(try router.send(span, to: identity))
        XCTAssertTrue(try ZmqPoll.poll([dealer], timeoutMs: 5000)[0])
        let back = try XCTUnwrap(try dealer.receiveEnvelope())
        XCTAssertNil(back.identity)
        XCTAssertEqual(try back.result.get(), span)
    }

    func testDealerRouterOverTCP() throws {
        try exchange(endpoint: "tcp://127.0.0.1:*")
    }

    func testDealerRouterOverIPC() throws {
        let path = "/tmp/mf-wire-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        defer { unlink(path) }
        try exchange(endpoint: "ipc://\(path)")
    }

    func testDealerBindsRouterConnectsOverTCPAndIPC() throws {
        try exchange(endpoint: "tcp://127.0.0.1:*", routerBinds: false)
        let path = "/tmp/mf-wire-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        defer { unlink(path) }
        try exchange(endpoint: "ipc://\(path)", routerBinds: false)
    }

    func testBindReportsTheRealPort() throws {
        let router = try ZmqSocket(context: context, type: .router)
        defer { router.close() }
        let endpoint = try router.bind("tcp://127.0.0.1:*")
        XCTAssertTrue(endpoint.hasPrefix("tcp://127.0.0.1:"), endpoint)
        XCTAssertNotEqual(endpoint, "tcp://127.0.0.1:*")
        XCTAssertGreaterThan(Int(endpoint.split(separator: ":").last ?? "") ?? 0, 0)
    }

    func testBindErrorsNameTheEndpoint() throws {
        let a = try ZmqSocket(context: context, type: .router)
        let b = try ZmqSocket(context: context, type: .router)
        defer { a.close(); b.close() }
        let endpoint = try a.bind("tcp://127.0.0.1:*")
        XCTAssertThrowsError(try b.bind(endpoint)) { error in
            XCTAssertTrue("\(error)".contains(endpoint), "\(error)")
        }
        XCTAssertThrowsError(try b.bind("bogus://x"))
    }

    func testRouterSendToUnknownPeerReturnsFalse() throws {
        let router = try ZmqSocket(context: context, type: .router)
        defer { router.close() }
        _ = try router.bind("tcp://127.0.0.1:*")
        XCTAssertFalse(try router.send([Array("nobody".utf8), [1, 2, 3]]))
        XCTAssertFalse(try router.send([Array("nobody".utf8), [1]], dontWait: false))  // does not block either
        XCTAssertFalse(try router.send(Envelope(.heartbeat(Heartbeat())), to: Array("nobody".utf8)))
    }

    func testSendWouldBlockReturnsFalseAtTheHighWaterMark() throws {
        // A dealer with no peer cannot queue anything: dontWait sends fail, a blocking
        // send gives up after its send timeout instead of hanging.
        let dealer = try ZmqSocket(context: context, type: .dealer, sendHWM: 1, sendTimeoutMs: 100)
        defer { dealer.close() }
        XCTAssertFalse(try dealer.send([[1]]))
        let start = Date()
        XCTAssertFalse(try dealer.send([[1]], dontWait: false))
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)
    }

    func testPollTimesOutAndReceiveReturnsNilWhenIdle() throws {
        let dealer = try ZmqSocket(context: context, type: .dealer)
        let router = try ZmqSocket(context: context, type: .router)
        defer { dealer.close(); router.close() }
        _ = try router.bind("tcp://127.0.0.1:*")
        let start = Date()
        XCTAssertEqual(try ZmqPoll.poll([dealer, router], timeoutMs: 100), [false, false])
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertGreaterThan(elapsed, 0.08)
        XCTAssertLessThan(elapsed, 3)
        XCTAssertFalse(try router.waitReadable(timeoutMs: 20))
        XCTAssertNil(try router.receive())
        XCTAssertNil(try router.receiveEnvelope())
        try router.setReceiveTimeout(ms: 50)
        XCTAssertNil(try router.receive(dontWait: false))
    }

    func testUnexpectedFrameCountsAndTooManyFramesAreReported() throws {
        let router = try ZmqSocket(context: context, type: .router)
        let dealer = try ZmqSocket(context: context, type: .dealer)
        defer { dealer.close(); router.close() }
        try dealer.connect(try router.bind("tcp://127.0.0.1:*"))
        let payload = Envelope(.heartbeat(Heartbeat(load: 1))).encoded()

        XCTAssertTrue(try dealer.send([payload, payload], dontWait: false))
        XCTAssertTrue(try ZmqPoll.poll([router], timeoutMs: 5000)[0])
        let two = try XCTUnwrap(try router.receiveEnvelope())
        XCTAssertNotNil(two.identity)
        XCTAssertEqual(two.result, .failure(.unexpectedFrames(count: 3, expected: 2)))

        let many = [[UInt8]](repeating: [7], count: Limits.maxFramesPerMessage + 5)
        XCTAssertTrue(try dealer.send(many, dontWait: false))
        XCTAssertTrue(try ZmqPoll.poll([router], timeoutMs: 5000)[0])
        XCTAssertEqual(try router.receive(), [])  // drained, not kept

        XCTAssertTrue(try dealer.send([payload], dontWait: false))
        XCTAssertTrue(try ZmqPoll.poll([router], timeoutMs: 5000)[0])
        XCTAssertEqual(try router.receiveEnvelope()?.result, .success(Envelope(.heartbeat(Heartbeat(load: 1)))))
    }

    func testVersionMismatchOverTheWireIsRefusedAndAnswered() throws {
        let router = try ZmqSocket(context: context, type: .router)
        let dealer = try ZmqSocket(context: context, type: .dealer)
        defer { dealer.close(); router.close() }
        try dealer.connect(try router.bind("tcp://127.0.0.1:*"))

        // A "v2.1" peer says hello.
        var hb = PB()
        hb.uint(1, 1)
        XCTAssertTrue(try dealer.send([PB.envelope(version: 2001, bodyField: 11, hb)], dontWait: false))
        XCTAssertTrue(try ZmqPoll.poll([router], timeoutMs: 5000)[0])
        let (identity, result) = try XCTUnwrap(try router.receiveEnvelope())
        XCTAssertEqual(result, .failure(.versionMismatch(peer: 2001)))

        // The router answers with a refusal the peer can log.
        XCTAssertTrue(try router.send(Envelope.versionRefusal(peer: 2001), to: identity))
        XCTAssertTrue(try ZmqPoll.poll([dealer], timeoutMs: 5000)[0])
        guard case .success(let reply) = try XCTUnwrap(try dealer.receiveEnvelope()).result,
              case .error(let body) = reply.body else { return XCTFail("no refusal received") }
        XCTAssertEqual(body.code, .version)
        XCTAssertTrue(body.message.contains("v2.1"), body.message)
    }

    func testSocketOptionsValidateAndClosedSocketsThrow() throws {
        let dealer = try ZmqSocket(context: context, type: .dealer)
        XCTAssertThrowsError(try dealer.setIdentity([]))
        XCTAssertThrowsError(try dealer.setIdentity([0, 1]))
        XCTAssertNoThrow(try dealer.setReconnectInterval(ms: 100, maxMs: 2000))
        XCTAssertNoThrow(try dealer.setHeartbeat(ivlMs: 1000, timeoutMs: 3000))
        XCTAssertThrowsError(try dealer.send([[UInt8]]()))
        dealer.close()
        dealer.close()
        XCTAssertThrowsError(try dealer.send([[1]])) { XCTAssertEqual($0 as? ZmqError, .closed) }
        XCTAssertThrowsError(try dealer.receive()) { XCTAssertEqual($0 as? ZmqError, .closed) }
    }

    /// Each socket owned by its own thread: an echo server thread and the test thread.
    func testEchoAcrossThreads() throws {
        let router = try ZmqSocket(context: context, type: .router)
        let endpoint = try router.bind("tcp://127.0.0.1:*")
        let done = DispatchSemaphore(value: 0)
        let rounds = 200
        let server = Thread {
            var served = 0
            while served < rounds {
                guard (try? ZmqPoll.poll([router], timeoutMs: 100))?[0] == true else { continue }
                while let frames = try? router.receive() {
                    _ = try? router.send(frames, dontWait: false)
                    served += 1
                }
            }
            router.close()
            done.signal()
        }
        server.start()
        let dealer = try ZmqSocket(context: context, type: .dealer)
        defer { dealer.close() }
        try dealer.connect(endpoint)
        for i in 0..<rounds {
            let payload = Envelope(.heartbeat(Heartbeat(load: UInt32(i)))).encoded()
            XCTAssertTrue(try dealer.send([payload], dontWait: false))
            XCTAssertEqual(try receiveWithin(dealer), [payload])
        }
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
    }
}
