import Foundation
import Random
import XCTest
@testable import Wire

/// Garbage for the decoder: random bytes, and valid envelopes damaged in the ways
/// networks and hostile peers damage them.
struct Mutator {
    var rng: SplitMix64
    let corpus: [[UInt8]]
    // Bytes that tend to reach edge cases: varint continuation, max lengths, tags of
    // every wire type, invalid UTF-8 leads.
    static let interesting: [UInt8] = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0x08, 0x0A, 0x12, 0x0D, 0x09, 0x0B, 0x0C,
                                       0x0F, 0xC0, 0xC3, 0xE2, 0xED, 0xF4, 0xF8, 0x82, 0x52, 0x8A, 0x01]

    mutating func randomBytes(maxCount: Int) -> [UInt8] {
        let n = Int.random(in: 0...maxCount, using: &rng)
        return (0..<n).map { _ in
            Bool.random(using: &rng) ? UInt8.random(in: 0...255, using: &rng)
                                     : Self.interesting.randomElement(using: &rng)!
        }
    }

    mutating func next() -> [UInt8] {
        if Int.random(in: 0..<5, using: &rng) == 0 { return randomBytes(maxCount: 300) }
        var b = corpus.randomElement(using: &rng)!
        for _ in 0..<Int.random(in: 1...6, using: &rng) { mutate(&b) }
        return b
    }

    private mutating func mutate(_ b: inout [UInt8]) {
        let i = b.isEmpty ? 0 : Int.random(in: 0..<b.count, using: &rng)
        switch Int.random(in: 0..<9, using: &rng) {
        case 0 where !b.isEmpty: b[i] ^= 1 << UInt8.random(in: 0...7, using: &rng)                  // bit flip
        case 1 where !b.isEmpty: b[i] = Self.interesting.randomElement(using: &rng)!                // edge byte
        case 2 where !b.isEmpty: b[i] = UInt8.random(in: 0...255, using: &rng)                     // random byte
        case 3: b.insert(contentsOf: randomBytes(maxCount: 12), at: i)                             // insertion
        case 4 where !b.isEmpty: b.removeSubrange(i..<min(b.count, i + Int.random(in: 1...16, using: &rng)))
        case 5: b = Array(b.prefix(i))                                                             // truncation
        case 6 where !b.isEmpty:                                                                   // duplicate chunk
            let chunk = b[i..<min(b.count, i + Int.random(in: 1...32, using: &rng))]
            b.insert(contentsOf: chunk, at: Int.random(in: 0...b.count, using: &rng))
        case 7:                                                                                    // splice
            let other = corpus.randomElement(using: &rng)!
            let j = Int.random(in: 0...other.count, using: &rng)
            b = Array(b.prefix(i)) + other.suffix(from: j)
        default:                                                                                   // huge varint
            b.insert(contentsOf: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], at: i)
        }
    }
}

final class FuzzTests: XCTestCase {
    static let seed: UInt64 = 0x5EED_2026_0005
    static let inputs = 100_000

    /// Every decode path gets 100,000 seeded garbage inputs: no crash, no hang, every
    /// outcome counted; whatever decodes must re-encode to an equal envelope.
    func testDecodeSurvivesRandomAndMutatedInputs() throws {
        let corpus = Samples.bodies.map { Envelope($0).encoded() }
        var mutator = Mutator(rng: SplitMix64(seed: Self.seed), corpus: corpus)
        var errors: [String: Int] = [:]
        var decoded = 0
        let start = Date()
        for index in 0..<Self.inputs {
            let input = mutator.next()
            do {
                let envelope = try Envelope.decode(input)
                decoded += 1
                let again = try Envelope.decode(envelope.encoded())
                if again != envelope {
                    XCTFail("seed \(Self.seed) input \(index): decode(encode(x)) != x for \(input)")
                }
            } catch let error as WireError {
                errors[error.kind, default: 0] += 1
            } catch {
                XCTFail("seed \(Self.seed) input \(index): non-wire error \(error)")
            }
        }
        let elapsed = Date().timeIntervalSince(start)
        let total = decoded + errors.values.reduce(0, +)
        print("fuzz: \(Self.inputs) inputs in \(String(format: "%.2f", elapsed)) s; decoded \(decoded); errors \(errors.sorted { $0.key < $1.key })")
        XCTAssertEqual(total, Self.inputs)
        // The mix must exercise both sides: some inputs survive, many are refused, and the
        // refusals are of several kinds (parse, version, UTF-8, enum...).
        XCTAssertGreaterThan(decoded, Self.inputs / 100)
        XCTAssertGreaterThan(errors["malformed", default: 0], Self.inputs / 10)
        XCTAssertGreaterThanOrEqual(errors.count, 4, "\(errors)")
        XCTAssertLessThan(elapsed, 120, "decoding garbage took too long: a hang or a quadratic path")
    }

    /// Garbage in the frames around the payload (ROUTER identity, extra frames) goes
    /// through `receiveEnvelope` as counted failures, and the socket keeps working.
    func testReceiveEnvelopeSurvivesGarbageMessages() throws {
        let context = try ZmqContext()
        defer { context.terminate() }
        let router = try ZmqSocket(context: context, type: .router)
        let dealer = try ZmqSocket(context: context, type: .dealer)
        defer { dealer.close(); router.close() }
        let endpoint = try router.bind("tcp://127.0.0.1:*")
        try dealer.connect(endpoint)

        let corpus = Samples.bodies.map { Envelope($0).encoded() }
        var mutator = Mutator(rng: SplitMix64(seed: Self.seed ^ 1), corpus: corpus)
        let count = 3000
        var sent = 0
        for _ in 0..<count {
            let frames = (0..<Int.random(in: 0...3, using: &mutator.rng)).map { _ in mutator.next() }
            if frames.isEmpty { continue }
            if try dealer.send(frames, dontWait: false) { sent += 1 }
        }
        XCTAssertTrue(try dealer.send(Envelope(.cancel(Cancel(requestId: "last"))), to: nil))

        var received = 0, failures = 0
        var last: Envelope?
        let deadline = Date().addingTimeInterval(20)
        while last != .init(.cancel(Cancel(requestId: "last"))) && Date() < deadline {
            guard try ZmqPoll.poll([router], timeoutMs: 200)[0] else { continue }
            while let (identity, result) = try router.receiveEnvelope() {
                received += 1
                XCTAssertNotNil(identity)
                switch result {
                case .success(let e): last = e
                case .failure: failures += 1
                }
            }
        }
        XCTAssertEqual(last, Envelope(.cancel(Cancel(requestId: "last"))), "the socket stopped working")
        XCTAssertEqual(received, sent + 1)
        XCTAssertGreaterThan(failures, sent / 2)
    }
}
