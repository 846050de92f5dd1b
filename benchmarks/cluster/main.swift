// cluster-bench: what the cluster's processes add, measured through real sockets.
//
//   cluster-bench dispatch --bin PATH [--spans 3000] [--transport ipc|tcp]
//       Per-span cost of the router: a real `mambaformer router` process, a fake expert
//       in this process that answers every span at once (zero compute), and a client that
//       asks for answers of many one-token spans. The time between two span events at the
//       client is one full dispatch cycle (router → expert → router → client). Compared
//       with the same cycle through `RouterCore` called in-process (no sockets).
//
//   cluster-bench batching --bin PATH --model DIR [--kind emamba] [--tokens 64] [--concurrency 1,8]
//       Token throughput of one real expert process behind a real router with N concurrent
//       requests (continuous batching), versus N = 1, and versus the same burst run in this
//       process by the same scheduler without sockets (`LocalExperts.burst`; DIR must then be a
//       MambaFormer checkpoint): what the node costs around the engine.
//
//   cluster-bench e2e --bin PATH --model DIR [--tokens 64] [--span-tokens 16] [--requests 20]
//       One answer at a time through gateway + router + experts (HTTP, ZeroMQ, 3–4 processes)
//       versus the same answer generated in this process (EndToEnd.swift).
//
//   cluster-bench replicas --bin PATH --model DIR [--tokens 32] [--requests 200] [--concurrency 8]
//       Answers per second with 1 and 2 EMamba replicas under the traffic generator.
//
//   cluster-bench admission [--model DIR] [--repeats 20]
//       What admitting one request costs the router's thread (Admission.swift): counting the
//       prompt in both pools' tokens and the gate's first decision, ordinary and hostile prompts.
//
// Prints one JSON line per measurement.
import Foundation
import Engine
import Gate
import Generation
import RouterNode
import Wire
#if canImport(Glibc)
import Glibc
#endif

func nowNs() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
func option(_ name: String, _ args: [String]) -> String? {
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
}
func percentile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    return sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * p).rounded()))]
}
func summary(_ samplesUs: [Double]) -> String {
    let s = samplesUs.sorted()
    return String(format: "\"n\":%d,\"median_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f", s.count,
                  percentile(s, 0.5), percentile(s, 0.9), percentile(s, 0.99))
}

/// A child process that is killed when this one ends.
final class Child {
    let process = Process()
    init(_ bin: String, _ arguments: [String], log: URL) throws {
        process.executableURL = URL(fileURLWithPath: bin)
        process.arguments = arguments
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        var env = ProcessInfo.processInfo.environment
        env["MAMBAFORMER_PARENT_PID"] = "\(getpid())"
        // `dispatch --transport tcp` measures plain-text TCP on loopback on purpose.
        env["MAMBAFORMER_SECURITY_ALLOW_PLAINTEXT_WIRE"] = "true"
        process.environment = env
        try process.run()
    }
    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }
}

/// Receives the next envelope within `timeoutMs` (nil on timeout).
func next(_ socket: ZmqSocket, timeoutMs: Int) throws -> Envelope? {
    let readable = try ZmqPoll.poll([socket], timeoutMs: timeoutMs)
    guard readable[0], let message = try socket.receiveEnvelope(), case .success(let e) = message.result else { return nil }
    return e
}

/// The answer a zero-compute expert gives: as many one-character pieces as asked.
func instantResult(_ span: SpanRequest) -> SpanResult {
    let n = Int(max(1, span.maxNewTokens))
    return SpanResult(requestId: span.requestId, spanIndex: span.spanIndex,
                      pieces: (0..<n).map { _ in Piece(text: "x", tokenId: 7) }, text: String(repeating: "x", count: n),
                      computeUs: 0, promptTokens: 8)
}

/// The fake expert: registers, answers every span at once, heartbeats. Runs on its own thread.
func runInstantExpert(backend: String, stop: StopFlag) {
    do {
        let context = try ZmqContext()
        let socket = try ZmqSocket(context: context, type: .dealer)
        try socket.connect(backend)
        _ = try socket.send(Envelope(.ready(Ready(pool: .emamba, modelId: "instant", replicaId: "instant-1",
                                                  capacity: 64, softwareVersion: "bench"))), to: nil)
        var lastBeat = nowNs()
        while !stop.isSet {
            if let envelope = try next(socket, timeoutMs: 20), case .spanRequest(let span) = envelope.body {
                _ = try socket.send(Envelope(.spanResult(instantResult(span))), to: nil)
            }
            if nowNs() - lastBeat > 200_000_000 {
                lastBeat = nowNs()
                _ = try socket.send(Envelope(.heartbeat(Heartbeat())), to: nil)
            }
        }
        socket.close()
        context.terminate()
    } catch {
        FileHandle.standardError.write(Data("instant expert: \(error)\n".utf8))
    }
}

/// Asks `requests` questions one after another and returns the gaps between span events.
func spanGaps(client: ZmqSocket, requests: Int, spansPerRequest: UInt32) throws -> [Double] {
    var gaps: [Double] = []
    for r in 0..<requests {
        let request = AnswerRequest(requestId: "d-\(r)", question: "What is a molar?", maxNewTokens: spansPerRequest,
                                    policy: Policy(costWeight: 1, forced: .emamba), spanTokens: 1)
        _ = try client.send(Envelope(.answerRequest(request)), to: nil)
        var last: UInt64?
        while true {
            guard let e = try next(client, timeoutMs: 5000) else { throw CocoaError(.fileReadUnknown) }
            guard case .answerEvent(let event) = e.body else { continue }
            if case .span = event.kind {
                let t = nowNs()
                if let last { gaps.append(Double(t - last) / 1000) }
                last = t
            } else { break }
        }
    }
    return gaps
}

func dispatchBenchmark(bin: String, spans: Int, transport: String) throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cluster-bench-\(getpid())")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let (frontend, backend) = transport == "tcp"
        ? ("tcp://127.0.0.1:\(20000 + Int(getpid()) % 20000)", "tcp://127.0.0.1:\(40001 + Int(getpid()) % 20000)")
        : ("ipc://\(dir.path)/f", "ipc://\(dir.path)/b")
    let router = try Child(bin, ["router", "--frontend", frontend, "--backend", backend, "--gate", "rule",
                                 "--log-level", "warning"], log: dir.appendingPathComponent("router.log"))
    defer { router.stop() }
    let stop = StopFlag()
    let expert = Thread { runInstantExpert(backend: backend, stop: stop) }
    expert.start()
    defer { stop.set() }

    let context = try ZmqContext()
    let client = try ZmqSocket(context: context, type: .dealer)
    try client.connect(frontend)
    Thread.sleep(forTimeInterval: 0.5)  // the expert registers
    let perRequest: UInt32 = 50
    _ = try spanGaps(client: client, requests: 5, spansPerRequest: perRequest)  // warm-up
    let gaps = try spanGaps(client: client, requests: max(1, spans / Int(perRequest)), spansPerRequest: perRequest)
    print("{\"bench\":\"dispatch\",\"path\":\"router process, \(transport)\",\(summary(gaps))}")
    client.close()
    context.terminate()

    // The same cycle through the router's state machine in this process: codec + core, no sockets.
    let core = RouterCore(gate: RuleGate())
    let expertId: PeerIdentity = [1], gatewayId: PeerIdentity = [2]
    func roundTrip(_ e: Envelope) -> Result<Envelope, WireError> {
        do { return .success(try Envelope.decode(e.encoded())) } catch let error as WireError { return .failure(error) } catch {
            return .failure(WireError.malformed(bytes: 0))
        }
    }
    _ = core.expertFrame(expertId, roundTrip(Envelope(.ready(Ready(pool: .emamba, modelId: "instant", replicaId: "instant-1",
                                                                   capacity: 64, softwareVersion: "bench")))), now: WallClock.nowMs())
    var local: [Double] = []
    for r in 0..<(max(1, spans / Int(perRequest)) + 5) {
        let request = AnswerRequest(requestId: "l-\(r)", question: "What is a molar?", maxNewTokens: perRequest,
                                    policy: Policy(costWeight: 1, forced: .emamba), spanTokens: 1)
        var actions = core.gatewayFrame(gatewayId, roundTrip(Envelope(.answerRequest(request))), now: WallClock.nowMs())
        var last: UInt64?
        var finished = false
        while !finished {
            var nextActions: [RouterAction] = []
            for action in actions {
                switch action {
                case .toExpert(_, let e):
                    guard case .spanRequest(let span) = e.body else { continue }
                    nextActions += core.expertFrame(expertId, roundTrip(Envelope(.spanResult(instantResult(span)))), now: WallClock.nowMs())
                case .toGateway(_, let e):
                    guard case .answerEvent(let event) = (try? Envelope.decode(e.encoded()))?.body else { continue }
                    if case .span = event.kind {
                        let t = nowNs()
                        if let last, r >= 5 { local.append(Double(t - last) / 1000) }
                        last = t
                    } else { finished = true }
                }
            }
            if nextActions.isEmpty { finished = true }
            actions = nextActions
        }
    }
    print("{\"bench\":\"dispatch\",\"path\":\"RouterCore in-process (codec, no sockets)\",\(summary(local))}")
}

func batchingBenchmark(bin: String, model: String, kind: String, tokens: UInt32, concurrencies: [Int]) throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cluster-bench-\(getpid())")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let frontend = "ipc://\(dir.path)/f", backend = "ipc://\(dir.path)/b"
    let capacity = concurrencies.max() ?? 8
    let router = try Child(bin, ["router", "--frontend", frontend, "--backend", backend, "--model", model, "--gate", "rule",
                                 "--span-tokens", "\(tokens)", "--log-level", "warning"], log: dir.appendingPathComponent("router.log"))
    defer { router.stop() }
    let expert = try Child(bin, ["expert", "--kind", kind, "--model", model, "--router", backend, "--ignore-eos",
                                 "--capacity", "\(capacity)", "--log-level", "warning"], log: dir.appendingPathComponent("expert.log"))
    defer { expert.stop() }
    let context = try ZmqContext()
    let client = try ZmqSocket(context: context, type: .dealer)
    try client.connect(frontend)
    let pool: PoolKind = kind == "et5" ? .et5 : .emamba
    var round = 0

    /// N requests at once; returns generated tokens per second of wall time.
    func burst(_ n: Int) throws -> (tokensPerSecond: Double, seconds: Double) {
        round += 1
        let start = nowNs()
        for i in 0..<n {
            let request = AnswerRequest(requestId: "b\(round)-\(i)", question: "What is gingivitis? Explain it briefly \(i).",
                                        maxNewTokens: tokens, policy: Policy(costWeight: 0.5, forced: pool), spanTokens: tokens)
            _ = try client.send(Envelope(.answerRequest(request)), to: nil)
        }
        var done = 0, generated = 0
        var lastHeartbeat = nowNs(), lastEvent = nowNs()
        while done < n {
            // Heartbeat like a gateway: the router drops a client silent for 3 s, and its answers.
            if nowNs() - lastHeartbeat > 1_000_000_000 {
                _ = try client.send(Envelope(.heartbeat(Heartbeat())), to: nil)
                lastHeartbeat = nowNs()
            }
            guard let e = try next(client, timeoutMs: 500) else {
                if nowNs() - lastEvent > 120_000_000_000 { throw CocoaError(.fileReadUnknown) }
                continue
            }
            lastEvent = nowNs()
            guard case .answerEvent(let event) = e.body else { continue }
            switch event.kind {
            case .span(let s): generated += s.pieces.count
            case .done: done += 1
            case .error(let err): throw err
            }
        }
        let seconds = Double(nowNs() - start) / 1e9
        return (Double(generated) / seconds, seconds)
    }

    // Wait for the expert to register (the first request would be refused as unavailable).
    var registered = false
    for _ in 0..<600 where !registered {
        if (try? burst(1)) != nil { registered = true } else { Thread.sleep(forTimeInterval: 0.1) }
    }
    guard registered else { throw CocoaError(.fileReadUnknown) }
    // The same bursts in this process, one BLAS thread like the expert (loaded after the
    // expert has warmed up, measured after it, never beside it).
    let local = try? LocalExperts(checkpoint: MambaformerCheckpoint(root: URL(fileURLWithPath: model)), ignoreEOS: true)
    func requests(_ n: Int) -> [AnswerRequest] {
        round += 1
        return (0..<n).map { i in
            AnswerRequest(requestId: "l\(round)-\(i)", question: "What is gingivitis? Explain it briefly \(i).",
                          maxNewTokens: tokens, policy: Policy(costWeight: 0.5, forced: pool), spanTokens: tokens)
        }
    }
    var baseline: Double?
    for n in concurrencies {
        var runs: [Double] = []
        for _ in 0..<3 { runs.append(try burst(n).tokensPerSecond) }
        let median = runs.sorted()[1]
        if n == concurrencies.first { baseline = median }
        var inProcess = "null", ratio = "null"
        if let local {
            var localRuns: [Double] = []
            for _ in 0..<3 {
                let batch = requests(n)
                let start = nowNs()
                let generated = try local.burst(pool, requests: batch, spanTokens: tokens)
                localRuns.append(Double(generated) / (Double(nowNs() - start) / 1e9))
            }
            let localMedian = localRuns.sorted()[1]
            inProcess = String(format: "%.1f", localMedian)
            ratio = String(format: "%.2f", median / localMedian)
        }
        print(String(format: "{\"bench\":\"batching\",\"kind\":\"%@\",\"concurrency\":%d,\"tokens_per_request\":%d,\"tokens_per_s_median\":%.1f,\"vs_first\":%.2f,",
                     kind, n, tokens, median, median / (baseline ?? median))
              + "\"in_process_tokens_per_s\":\(inProcess),\"node_vs_in_process\":\(ratio)}")
    }
    client.close()
    context.terminate()
}

let args = Array(CommandLine.arguments.dropFirst())
if args.first == "admission" {
    do {
        try admissionBenchmark(model: option("--model", args) ?? "models/demo", repeats: Int(option("--repeats", args) ?? "20") ?? 20)
        exit(0)
    } catch {
        FileHandle.standardError.write(Data("cluster-bench: \(error)\n".utf8))
        exit(1)
    }
}
guard let command = args.first, let bin = option("--bin", args) else {
    print("usage: cluster-bench dispatch --bin PATH [--spans 3000] [--transport ipc|tcp]\n"
        + "       cluster-bench batching --bin PATH --model DIR [--kind emamba|et5] [--tokens 64] [--concurrency 1,8]\n"
        + "       cluster-bench e2e --bin PATH --model DIR [--tokens 64] [--span-tokens 16] [--requests 20]\n"
        + "       cluster-bench replicas --bin PATH --model DIR [--tokens 32] [--requests 200] [--concurrency 8]\n"
        + "       cluster-bench admission [--model DIR] [--repeats 20]")
    exit(2)
}
do {
    switch command {
    case "dispatch":
        try dispatchBenchmark(bin: bin, spans: Int(option("--spans", args) ?? "3000") ?? 3000,
                              transport: option("--transport", args) ?? "ipc")
    case "batching":
        try batchingBenchmark(bin: bin, model: option("--model", args) ?? "models/demo", kind: option("--kind", args) ?? "emamba",
                              tokens: UInt32(option("--tokens", args) ?? "64") ?? 64,
                              concurrencies: (option("--concurrency", args) ?? "1,8").split(separator: ",").compactMap { Int($0) })
    case "e2e":
        try endToEndBenchmark(bin: bin, model: option("--model", args) ?? "models/demo",
                              tokens: Int(option("--tokens", args) ?? "64") ?? 64,
                              spanTokens: Int(option("--span-tokens", args) ?? "16") ?? 16,
                              requests: Int(option("--requests", args) ?? "20") ?? 20)
    case "replicas":
        try replicasBenchmark(bin: bin, model: option("--model", args) ?? "models/demo",
                              tokens: Int(option("--tokens", args) ?? "32") ?? 32,
                              requests: Int(option("--requests", args) ?? "200") ?? 200,
                              concurrency: Int(option("--concurrency", args) ?? "8") ?? 8)
    default:
        print("unknown command \(command)")
        exit(2)
    }
} catch {
    FileHandle.standardError.write(Data("cluster-bench: \(error)\n".utf8))
    exit(1)
}
