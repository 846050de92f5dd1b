import XCTest
@testable import Wire

/// One envelope per message type (and per AnswerEvent kind), with non-default values in
/// every field so a field dropped by the codec shows up as a difference.
enum Samples {
    static let sampling = Sampling(temperature: 0.7, topP: 0.9, topK: 40, seed: 0xDEAD_BEEF_CAFE, repetitionPenalty: 1.1)

    static let spanResult = SpanResult(
        requestId: "req-42", spanIndex: 3,
        pieces: [Piece(text: "Aspirin", tokenId: 1234, logprob: -0.25, entropy: 1.5,
                       top: [TokenLogprob(tokenId: 1234, text: "Asp", logprob: -0.25), TokenLogprob(tokenId: 7, text: "▁The", logprob: -2.5)]),
                 Piece(text: " inhibits", tokenId: 99, logprob: -.infinity, entropy: 0),
                 Piece(text: "", tokenId: 7, logprob: -3, entropy: 2.25),
                 Piece(text: " COX-1 → ✓ 日本語 🩺", tokenId: 4_000_000_000, logprob: -1e-7, entropy: 9.5)],
        text: "Aspirin inhibits COX-1 → ✓ 日本語 🩺", finish: .length, computeUs: 123_456_789_012,
        cachedPrefixTokens: 17, promptTokens: 230, replicaId: "emamba-3", pool: .emamba,
        gateScore: 0.125, queueUs: 42)

    static let bodies: [Body] = [
        .ready(Ready(pool: .et5, modelId: "flan-t5-small", replicaId: "et5-1", capacity: 8, softwareVersion: "0.1.0")),
        .heartbeat(Heartbeat(load: 5, emambaReplicas: 3, et5Replicas: 1)),
        .heartbeat(Heartbeat(load: 2, draining: true, capacity: 3)),
        .heartbeat(Heartbeat()),
        .disconnect(Disconnect(reason: "SIGTERM: draining")),
        .answerRequest(AnswerRequest(requestId: "req-1", question: "Does aspirin reduce fever?",
                                     context: String(repeating: "Long clinical context. ", count: 500),
                                     maxNewTokens: 256, policy: Policy(costWeight: 0.3, forced: .et5),
                                     sampling: sampling, deadlineUnixMs: 1_800_000_000_000, spanTokens: 16, deadlineMs: 30_000)),
        .answerRequest(AnswerRequest(requestId: "r", question: "q", policy: Policy(costWeight: 0, forced: .unspecified))),
        // 1.4: an answer moving to another router, with the answer so far.
        .answerRequest(AnswerRequest(requestId: "logprobs", question: "q", topLogprobs: 5)),
        .answerRequest(AnswerRequest(requestId: "moved", question: "q", maxNewTokens: 64,
                                     policy: Policy(costWeight: 0.5, defaultCostWeight: true), deadlineMs: 9_000,
                                     resume: AnswerProgress(text: "Gum inflammation 🦷", tokens: 20, tokensByPool: [.emamba: 16, .et5: 4],
                                                            spans: 2, previousPool: .et5, previousConfidence: 0.625,
                                                            previousEntropy: 1.75, promptTokens: 31))),
        .answerEvent(AnswerEvent(requestId: "req-42", kind: .span(spanResult))),
        .answerEvent(AnswerEvent(requestId: "req-42", kind: .done(DoneStats(
            finish: .eos, spans: 4, promptTokens: 230, completionTokens: 61, emambaTokens: 45, et5Tokens: 16,
            totalUs: 987_654, queueUs: 321, retries: 1, gateKind: "rule")))),
        .answerEvent(AnswerEvent(requestId: "req-43", kind: .error(WireErrorBody(
            code: .overloaded, message: "EMamba pool full", retryable: true)))),
        .answerEvent(AnswerEvent(requestId: "req-44", kind: .error(WireErrorBody(
            code: .badRequest, message: "question + context is 3000 et5 tokens; the limit is 2048", retryable: false,
            reason: WireErrorBody.Reason.promptTooLong)))),
        .cancel(Cancel(requestId: "req-9")),
        .spanRequest(SpanRequest(requestId: "req-42", spanIndex: 2, prompt: "question: ...\ncontext: ...",
                                 answerSoFar: "Aspirin", maxNewTokens: 16, sampling: sampling,
                                 deadlineUnixMs: 1_800_000_000_123, sessionHint: "req-42", answerTokensBefore: 32, deadlineMs: 4_321,
                                 topLogprobs: 3)),
        .spanResult(spanResult),
        .spanResult(SpanResult(requestId: "x", spanIndex: 0)),
        .error(WireErrorBody(code: .unauthorized, message: "unknown replica", retryable: false)),
        .heartbeat(Heartbeat(load: 2, draining: true)),
        .poolStatusRequest,
        .poolStatus(PoolStatus(emamba: PoolLoad(spansRunning: 7, spansQueued: 12, replicasReady: 2, replicasDraining: 1, capacity: 16),
                               et5: PoolLoad(spansRunning: 1, spansQueued: 0, replicasReady: 1, replicasDraining: 0, capacity: 8))),
        .poolStatus(PoolStatus()),
    ]
}

final class CodecTests: XCTestCase {
    func testEveryMessageRoundTrips() throws {
        for body in Samples.bodies {
            let envelope = Envelope(body)
            let bytes = envelope.encoded()
            let decoded = try Envelope.decode(bytes)
            XCTAssertEqual(decoded, envelope, "round trip changed \(body)")
            XCTAssertEqual(decoded.version, WireProtocol.version)
        }
    }

    func testEveryEnumValueRoundTrips() throws {
        for pool in PoolKind.allCases {
            let e = Envelope(.ready(Ready(pool: pool, modelId: "m", replicaId: "r", capacity: 1, softwareVersion: "v")))
            XCTAssertEqual(try Envelope.decode(e.encoded()), e)
        }
        for raw in 0...8 {
            let code = try XCTUnwrap(ErrorCode(rawValue: raw))
            let e = Envelope(.error(WireErrorBody(code: code, message: "m", retryable: raw % 2 == 0)))
            XCTAssertEqual(try Envelope.decode(e.encoded()), e)
        }
        for raw in 0...4 {
            let finish = try XCTUnwrap(FinishReason(rawValue: raw))
            let e = Envelope(.spanResult(SpanResult(requestId: "r", spanIndex: 1, finish: finish)))
            XCTAssertEqual(try Envelope.decode(e.encoded()), e)
        }
    }

    func testLargestAllowedMessageRoundTrips() throws {
        let text = String(repeating: "é", count: Limits.maxTextBytes / 2)  // exactly 1 MiB of UTF-8
        let pieces = (0..<Limits.maxPieces).map { Piece(text: "t\($0)", tokenId: UInt32($0)) }
        let e = Envelope(.spanResult(SpanResult(requestId: "big", spanIndex: 0, pieces: pieces, text: text)))
        let bytes = e.encoded()
        XCTAssertLessThanOrEqual(bytes.count, Limits.maxFrameBytes)
        XCTAssertEqual(try Envelope.decode(bytes), e)
    }

    func testNulCharactersAreDroppedNotTruncating() throws {
        let e = Envelope(.disconnect(Disconnect(reason: "a\u{0}b\u{0}c")))
        XCTAssertEqual(try Envelope.decode(e.encoded()), Envelope(.disconnect(Disconnect(reason: "abc"))))
    }

    func testAbsentSubmessagesDecodeAsDefaults() throws {
        var req = PB()
        req.string(1, "req-1")
        req.string(2, "question?")
        let decoded = try Envelope.decode(PB.envelope(bodyField: 13, req))
        XCTAssertEqual(decoded.body, .answerRequest(AnswerRequest(requestId: "req-1", question: "question?",
                                                                  maxNewTokens: 0)))
    }

    func testUnknownFieldsAreIgnoredForForwardCompatibility() throws {
        var hb = PB()
        hb.uint(1, 3)
        hb.uint(99, 12345)  // a field a later minor version might add
        XCTAssertEqual(try Envelope.decode(PB.envelope(version: 1007, bodyField: 11, hb)).body,
                       .heartbeat(Heartbeat(load: 3)))
    }

    // MARK: Refusals

    /// A 1.0 peer's error has no `reason` (field 4): it reads as "", and a 1.0 envelope is accepted.
    func testErrorFromMinorVersionZeroHasNoReason() throws {
        var error = PB()
        error.uint(1, 1)
        error.string(2, "bad")
        error.uint(3, 0)
        guard case .error(let body) = try Envelope.decode(PB.envelope(version: 1000, bodyField: 18, error)).body else {
            return XCTFail("not an error body")
        }
        XCTAssertEqual(body, WireErrorBody(code: .badRequest, message: "bad", retryable: false, reason: ""))
    }

    func testOtherMajorVersionIsRefused() throws {
        var hb = PB()
        hb.uint(1, 1)
        for version: UInt64 in [0, 999, 2000, 2001, 7_000_000] {
            XCTAssertThrowsError(try Envelope.decode(PB.envelope(version: version, bodyField: 11, hb))) { error in
                XCTAssertEqual(error as? WireError, .versionMismatch(peer: UInt32(version)))
            }
        }
        let message = WireError.versionMismatch(peer: 2003).description
        XCTAssertTrue(message.contains("v2.3") && message.contains("v1.\(WireProtocol.minor)"), message)
        // The refusal sent back is a non-retryable version error the peer can log.
        let refusal = Envelope.versionRefusal(peer: 2003)
        guard case .error(let body) = try Envelope.decode(refusal.encoded()).body else {
            return XCTFail("refusal is not an error body")
        }
        XCTAssertEqual(body.code, .version)
        XCTAssertFalse(body.retryable)
        XCTAssertTrue(body.message.contains("v2.3"))
    }

    func testEmptyFrameHasNoBody() {
        XCTAssertThrowsError(try Envelope.decode([UInt8]())) { error in
            // An empty frame parses (proto3: all defaults) but has version 0 and no body.
            XCTAssertEqual(error as? WireError, .versionMismatch(peer: 0))
        }
        var e = PB()
        e.uint(1, 1000)
        XCTAssertThrowsError(try Envelope.decode(e.bytes)) { error in
            XCTAssertEqual(error as? WireError, .missingField("Envelope.body"))
        }
    }

    func testAnswerEventWithoutKindIsRefused() {
        var ev = PB()
        ev.string(1, "req-1")
        XCTAssertThrowsError(try Envelope.decode(PB.envelope(bodyField: 14, ev))) { error in
            XCTAssertEqual(error as? WireError, .missingField("AnswerEvent.kind"))
        }
    }

    func testOversizedFrameIsRefusedBeforeParsing() {
        let bytes = [UInt8](repeating: 0, count: Limits.maxFrameBytes + 1)
        XCTAssertThrowsError(try Envelope.decode(bytes)) { error in
            XCTAssertEqual(error as? WireError, .frameTooLarge(bytes: Limits.maxFrameBytes + 1, limit: Limits.maxFrameBytes))
        }
    }

    func testOversizedTextIsRefused() {
        var req = PB()
        req.string(1, "req-1")
        req.string(3, String(repeating: "x", count: Limits.maxTextBytes + 1))
        XCTAssertThrowsError(try Envelope.decode(PB.envelope(bodyField: 13, req))) { error in
            XCTAssertEqual(error as? WireError, .fieldTooLarge(field: "AnswerRequest.context",
                                                               bytes: Limits.maxTextBytes + 1, limit: Limits.maxTextBytes))
        }
    }

    func testTooManyPiecesAreRefused() {
        var span = PB()
        span.string(1, "req-1")
        var piece = PB()
        piece.uint(2, 1)
        for _ in 0...Limits.maxPieces { span.message(3, piece) }
        XCTAssertThrowsError(try Envelope.decode(PB.envelope(bodyField: 17, span))) { error in
            XCTAssertEqual(error as? WireError, .tooManyItems(field: "SpanResult.pieces",
                                                              count: Limits.maxPieces + 1, limit: Limits.maxPieces))
        }
    }

    func testInvalidUTF8IsRefusedWithTheFieldName() {
        for bad: [UInt8] in [[0xFF], [0xC3], [0xE2, 0x82], [0xED, 0xA0, 0x80], [0xC0, 0xAF], [0x61, 0xF8, 0x88, 0x80, 0x80, 0x80]] {
            var piece = PB()
            piece.bytesField(1, bad)
            var span = PB()
            span.string(1, "req-1")
            span.message(3, PB())
            span.message(3, piece)
            var event = PB()
            event.string(1, "req-1")
            event.message(2, span)
            XCTAssertThrowsError(try Envelope.decode(PB.envelope(bodyField: 14, event)), "\(bad)") { error in
                XCTAssertEqual(error as? WireError, .invalidUTF8(field: "AnswerEvent.span.pieces[1].text"))
            }
        }
    }

    func testUnknownEnumValuesAreRefused() {
        var ready = PB()
        ready.uint(1, 3)
        XCTAssertThrowsError(try Envelope.decode(PB.envelope(bodyField: 10, ready))) { error in
            XCTAssertEqual(error as? WireError, .unknownEnum(field: "Ready.pool", value: 3))
        }
        var err = PB()
        err.uint(1, 9)
        XCTAssertThrowsError(try Envelope.decode(PB.envelope(bodyField: 18, err))) { error in
            XCTAssertEqual(error as? WireError, .unknownEnum(field: "Error.code", value: 9))
        }
        var span = PB()
        span.uint(5, 77)
        XCTAssertThrowsError(try Envelope.decode(PB.envelope(bodyField: 17, span))) { error in
            XCTAssertEqual(error as? WireError, .unknownEnum(field: "SpanResult.finish", value: 77))
        }
        var policy = PB()
        policy.uint(2, 5)
        var req = PB()
        req.message(5, policy)
        XCTAssertThrowsError(try Envelope.decode(PB.envelope(bodyField: 13, req))) { error in
            XCTAssertEqual(error as? WireError, .unknownEnum(field: "AnswerRequest.policy.forced", value: 5))
        }
    }

    func testNonFiniteNumbersAreRefused() {
        var sampling = PB()
        sampling.float(1, .nan)
        var req = PB()
        req.message(6, sampling)
        XCTAssertThrowsError(try Envelope.decode(PB.envelope(bodyField: 16, req))) { error in
            XCTAssertEqual(error as? WireError, .notFinite(field: "SpanRequest.sampling.temperature"))
        }
        var policy = PB()
        policy.float(1, .infinity)
        var areq = PB()
        areq.message(5, policy)
        XCTAssertThrowsError(try Envelope.decode(PB.envelope(bodyField: 13, areq))) { error in
            XCTAssertEqual(error as? WireError, .notFinite(field: "AnswerRequest.policy.cost_weight"))
        }
        var piece = PB()
        piece.float(3, .nan)
        var span = PB()
        span.message(3, piece)
        XCTAssertThrowsError(try Envelope.decode(PB.envelope(bodyField: 17, span))) { error in
            XCTAssertEqual(error as? WireError, .notFinite(field: "SpanResult.pieces[0].logprob"))
        }
    }

    func testTruncatedAndCorruptFramesAreMalformed() throws {
        let bytes = Envelope(Samples.bodies[4]).encoded()
        XCTAssertThrowsError(try Envelope.decode(Array(bytes.dropLast(3)))) { error in
            XCTAssertEqual(error as? WireError, .malformed(bytes: bytes.count - 3))
        }
        // A length prefix pointing far past the end of the frame.
        XCTAssertThrowsError(try Envelope.decode([0x08, 0xE8, 0x07, 0x6A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F])) { error in
            XCTAssertEqual(error as? WireError, .malformed(bytes: 9))
        }
        // Wrong wire type for the body (varint where a message is expected).
        XCTAssertThrowsError(try Envelope.decode([0x08, 0xE8, 0x07, 0x50, 0x01])) { error in
            XCTAssertEqual(error as? WireError, .malformed(bytes: 5))
        }
    }

    func testErrorsHaveStableKindsAndReadableDescriptions() {
        let errors: [WireError] = [
            .frameTooLarge(bytes: 5, limit: 4), .malformed(bytes: 3), .versionMismatch(peer: 2000),
            .missingField("Envelope.body"), .fieldTooLarge(field: "f", bytes: 2, limit: 1),
            .tooManyItems(field: "p", count: 2, limit: 1), .invalidUTF8(field: "t"),
            .unknownEnum(field: "e", value: 9), .notFinite(field: "x"), .unexpectedFrames(count: 3, expected: 2),
        ]
        XCTAssertEqual(Set(errors.map(\.kind)).count, errors.count)
        for e in errors { XCTAssertFalse(e.description.isEmpty) }
    }

    /// A hostile expert cannot inflate a piece with alternatives: more than 5 is refused.
    func testTooManyAlternativesAreRefused() throws {
        let top = (0..<6).map { TokenLogprob(tokenId: UInt32($0), text: "t", logprob: -1) }
        let frame = Envelope(.spanResult(SpanResult(requestId: "r", spanIndex: 0, pieces: [Piece(text: "a", tokenId: 1, top: top)]))).encoded()
        XCTAssertThrowsError(try Envelope.decode(frame)) { error in XCTAssertTrue("\(error)".contains("top"), "\(error)") }
    }
}
