// Micro-benchmark of the Wire layer (not a test): the same measurements as raw_zmq.c,
// through the Swift API the nodes use. Run with benchmarks/wire/run.sh (release build).
// Output lines: "<name> <median> <p99> <unit>".

import Foundation
import Wire

func nowNs() -> Double { Double(DispatchTime.now().uptimeNanoseconds) }

/// CPU time of the whole process (all threads, libzmq's I/O thread included), in ns:
/// on a loaded host this is steadier than wall-clock latency.
func cpuNs() -> Double {
    var u = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u)
    return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e9 + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e3
}

func report(_ name: String, _ samples: [Double], _ unit: String, scale: Double = 1) {
    let s = samples.sorted()
    print(String(format: "%@ %.3f %.3f %@", name, s[s.count / 2] / scale, s[Int(Double(s.count) * 0.99)] / scale, unit))
    fflush(stdout)
}

// MARK: Codec: encode + decode of the same messages raw_zmq.c packs and unpacks.

let prompt = String(repeating: "p", count: 1024)
let sampling = Sampling(temperature: 0.7, topP: 0.9, topK: 40, seed: 42)
let spanText = (0..<16).map { " token\($0)" }.joined()
let messages: [(String, Envelope)] = [
    ("codec_heartbeat", Envelope(.heartbeat(Heartbeat(load: 3)))),
    ("codec_span_request_1k", Envelope(.spanRequest(SpanRequest(
        requestId: "req-0000000042", spanIndex: 3, prompt: prompt,
        answerSoFar: "Aspirin irreversibly inhibits cyclooxygenase, which", maxNewTokens: 16,
        sampling: sampling, deadlineUnixMs: 1_800_000_000_000, sessionHint: "req-0000000042",
        answerTokensBefore: 48)))),
    ("codec_span_result_16", Envelope(.spanResult(SpanResult(
        requestId: "req-0000000042", spanIndex: 3,
        pieces: (0..<16).map { Piece(text: " token\($0)", tokenId: UInt32(1000 + $0), logprob: -0.5, entropy: 1.25) },
        text: spanText, finish: .none, computeUs: 12345, cachedPrefixTokens: 200, promptTokens: 230,
        replicaId: "emamba-1", pool: .emamba, gateScore: 0.25, queueUs: 17)))),
]

func codecBench(_ name: String, _ envelope: Envelope) {
    let batch = 1000, rounds = 200
    var encodeOnly: [Double] = [], both: [Double] = []
    for _ in 0..<rounds {
        var t0 = nowNs()
        var bytes: [UInt8] = []
        for _ in 0..<batch { bytes = envelope.encoded() }
        encodeOnly.append((nowNs() - t0) / Double(batch))
        t0 = nowNs()
        for _ in 0..<batch {
            let b = envelope.encoded()
            guard let back = try? Envelope.decode(b), back.version == envelope.version else { fatalError("decode failed") }
        }
        both.append((nowNs() - t0) / Double(batch))
        precondition(!bytes.isEmpty)
    }
    report(name, both, "ns")
    report(name + "_encode_only", encodeOnly, "ns")
}

// MARK: Round trip: DEALER -> ROUTER echo thread -> DEALER over tcp://127.0.0.1.

func rttBench(_ context: ZmqContext, size: Int, rounds: Int, envelope: Envelope? = nil, name: String) throws {
    let router = try ZmqSocket(context: context, type: .router)
    let endpoint = try router.bind("tcp://127.0.0.1:*")
    let done = DispatchSemaphore(value: 0)
    let server = Thread {
        defer { router.close(); done.signal() }
        while true {
            guard (try? router.waitReadable(timeoutMs: -1)) == true else { continue }
            if envelope != nil {
                // Full stack: decode the envelope and send a re-encoded one back.
                guard let (identity, result) = try? router.receiveEnvelope() else { continue }
                guard case .success(let e) = result else { return }  // stop signal: an empty frame
                _ = try? router.send(e, to: identity)
            } else {
                guard let frames = try? router.receive() else { continue }
                _ = try? router.send(frames, dontWait: false)
                if frames.count == 2 && frames[1].isEmpty { return }
            }
        }
    }
    server.start()
    let dealer = try ZmqSocket(context: context, type: .dealer)
    try dealer.connect(endpoint)
    let payload = [UInt8](repeating: UInt8(ascii: "x"), count: size)
    var samples: [Double] = []
    samples.reserveCapacity(rounds)
    var cpu0 = 0.0
    for i in -rounds / 10..<rounds {  // first 10% warm up
        if i == 0 { cpu0 = cpuNs() }
        let t0 = nowNs()
        if let envelope {
            _ = try dealer.send(envelope, to: nil)
            _ = try dealer.waitReadable(timeoutMs: -1)
            guard case .success = try dealer.receiveEnvelope()?.result else { fatalError("bad echo") }
        } else {
            _ = try dealer.send([payload], dontWait: false)
            _ = try dealer.waitReadable(timeoutMs: -1)
            guard let back = try dealer.receive(), back.count == 1 else { fatalError("bad echo") }
        }
        if i >= 0 { samples.append(nowNs() - t0) }
    }
    let cpu = (cpuNs() - cpu0) / Double(rounds) / 1000
    _ = try dealer.send([[]], dontWait: false)
    done.wait()
    dealer.close()
    report(name, samples, "us", scale: 1000)
    print(String(format: "cpu_per_%@ %.3f %.3f us", name, cpu, cpu))
}

// Arguments: [rounds per round-trip size (20000)] [all|codec|rtt|rtt64]
let rounds = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 20000 : 20000
let mode = CommandLine.arguments.count > 2 ? CommandLine.arguments[2] : "all"
if !mode.hasPrefix("rtt") {
    for (name, envelope) in messages { codecBench(name, envelope) }
}
if mode != "codec" {
    let context = try ZmqContext()
    for size in mode == "rtt64" ? [64] : [64, 1024, 4096] {
        try rttBench(context, size: size, rounds: rounds, name: "rtt_\(size)")
    }
    if mode == "rtt64" { context.terminate(); exit(0) }
    try rttBench(context, size: 262_144, rounds: rounds / 10, name: "rtt_262144")
    try rttBench(context, size: 0, rounds: rounds, envelope: messages[2].1, name: "rtt_envelope_span_result_16")
    context.terminate()
}
