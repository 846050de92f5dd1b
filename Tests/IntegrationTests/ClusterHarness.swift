import Foundation
import TestCommon
import Gateway
import LoadGen
import Logging
import Wire
import XCTest

/// Starts real `mambaformer` processes (router, experts, gateway) on loopback/ipc endpoints
/// in a private folder, and kills every one of them when the test ends.
final class ClusterHarness {
    static var productsDirectory: URL { TestPaths.productsDirectory }
    static var binary: URL { TestPaths.binary }
    /// The previous release's binary (scripts/build-previous-release.sh), for upgrade tests.
    static var previousRelease: URL { repositoryRoot.appendingPathComponent(".build-previous/build/release/mambaformer") }
    static var repositoryRoot: URL { TestPaths.repositoryRoot }
    static var demoCheckpoint: URL { repositoryRoot.appendingPathComponent("models/demo") }

    /// A TCP port for a node to listen on: below Linux's ephemeral range (32768–60999), where
    /// the tests' own client connections take their local ports, and free right now.
    static func freePort(count: Int = 1) -> Int {
        while true {
            let base = Int.random(in: 20000...(32700 - count))
            if (base..<(base + count)).allSatisfy(isFree) { return base }
        }
    }

    private static func isFree(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }

    let dir: URL
    let frontend: String
    let backend: String
    private(set) var processes: [String: Process] = [:]
    private var logs: [String: URL] = [:]
    let model: URL

    init(model: URL = ClusterHarness.demoCheckpoint) throws {
        self.model = model
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("mf-it-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        frontend = "ipc://\(dir.path)/frontend"
        backend = "ipc://\(dir.path)/backend"
    }

    deinit { stopAll() }

    @discardableResult
    func start(_ name: String, _ arguments: [String], environment: [String: String] = [:],
               binary: URL = ClusterHarness.binary) throws -> Process {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        let log = dir.appendingPathComponent("\(name).log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        var env = ProcessInfo.processInfo.environment
        env["MAMBAFORMER_PARENT_PID"] = "\(getpid())"   // die with the test runner
        env["OPENBLAS_NUM_THREADS"] = "1"
        env.merge(environment) { _, new in new }
        process.environment = env
        try process.run()
        processes[name] = process
        logs[name] = log
        return process
    }

    /// Endpoints of router `n` of several (`routerEndpoints(1)` is not the single router's).
    func routerEndpoints(_ n: Int) -> (frontend: String, backend: String) {
        ("ipc://\(dir.path)/frontend-\(n)", "ipc://\(dir.path)/backend-\(n)")
    }

    func startRouter(gate: String = "alternate", spanTokens: Int = 4, extra: [String] = [], name: String = "router",
                     endpoints: (frontend: String, backend: String)? = nil,
                     environment: [String: String] = [:], binary: URL = ClusterHarness.binary) throws {
        let (frontend, backend) = endpoints ?? (self.frontend, self.backend)
        try start(name, ["router", "--frontend", frontend, "--backend", backend, "--model", model.path,
                             "--gate", gate, "--span-tokens", "\(spanTokens)", "--heartbeat-ms", "500"] + extra,
                  environment: environment, binary: binary)
    }

    func startExpert(_ kind: String, id: String, extra: [String] = [], environment: [String: String] = [:],
                     name: String? = nil, routers: [String]? = nil, binary: URL = ClusterHarness.binary) throws {
        // --ignore-eos: answers run to max tokens, so every request spans several spans
        // whatever the (small, demo) model would say.
        let routerFlags = (routers ?? [backend]).flatMap { ["--router", $0] }
        try start(name ?? id, ["expert", "--kind", kind, "--model", model.path] + routerFlags + ["--replica-id", id,
                               "--heartbeat-ms", "500", "--ignore-eos"] + extra, environment: environment, binary: binary)
    }

    /// The smallest whole cluster: router (alternating gate, 4-token spans), one EMamba and one
    /// ET5 replica, and a gateway on a free port with `gatewayArguments`. Returns the port once
    /// `/readyz` says both pools are there.
    func startSmallCluster(gatewayArguments: [String] = [], gatewayEnvironment: [String: String] = [:]) throws -> Int {
        try startRouter(gate: "alternate", spanTokens: 4)
        try startExpert("emamba", id: "emamba-1")
        try startExpert("et5", id: "et5-1")
        let port = Self.freePort()
        try start("gateway", ["gateway", "--listen", "127.0.0.1:\(port)", "--router", frontend] + gatewayArguments,
                  environment: gatewayEnvironment)
        guard RawHTTP.waitReady(port: port, emamba: 1, et5: 1) else {
            XCTFail("cluster not ready\n\(allLogs())")
            throw CancellationError()
        }
        return port
    }

    func signal(_ name: String, _ sig: Int32) {
        guard let p = processes[name], p.isRunning else { return }
        kill(p.processIdentifier, sig)
    }

    func waitForExit(_ name: String, timeout: TimeInterval = 10) -> Int32? {
        guard let p = processes[name] else { return nil }
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        return p.isRunning ? nil : p.terminationStatus
    }

    /// Resident memory of a running process in MiB (VmRSS), nil once it is gone.
    func residentMiB(_ name: String) -> Double? {
        guard let p = processes[name], p.isRunning,
              let status = try? String(contentsOfFile: "/proc/\(p.processIdentifier)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kib = Double(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "") else { return nil }
        return kib / 1024
    }

    /// Prometheus text from a node started with `--metrics 127.0.0.1:0` (it logs its URL).
    func scrapeMetrics(_ name: String) throws -> String {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if let range = log(name).range(of: #"metrics at (http://\S+/metrics)"#, options: .regularExpression),
               let url = URL(string: String(log(name)[range].dropFirst("metrics at ".count))) {
                return String(decoding: try Data(contentsOf: url), as: UTF8.self)
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTFail("\(name) never logged its metrics URL:\n\(log(name))")
        throw CancellationError()
    }

    /// The value of one sample line (`name{labels} value`) in Prometheus text, or nil.
    static func sample(_ text: String, _ series: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1).split(separator: " ")[0])
        }
        return nil
    }

    func log(_ name: String) -> String {
        guard let url = logs[name], let data = FileManager.default.contents(atPath: url.path) else { return "" }
        return String(decoding: data, as: UTF8.self)
    }

    func allLogs() -> String {
        logs.keys.sorted().map { "---- \($0) ----\n\(log($0).suffix(3000))" }.joined(separator: "\n")
    }

    func stopAll() {
        for p in processes.values where p.isRunning { kill(p.processIdentifier, SIGKILL) }
        for p in processes.values { p.waitUntilExit() }
        try? FileManager.default.removeItem(at: dir)
    }

    /// A router client (the gateway's real one) connected to this cluster's frontend.
    func client(heartbeatMs: UInt64 = 500) throws -> RouterClient {
        var logger = Logger(label: "test.client")
        logger.logLevel = .warning
        return try RouterClient(endpoint: frontend, heartbeatIntervalMs: heartbeatMs, logger: logger)
    }

    /// Starts a router and the named expert replicas, connects a client and waits until
    /// every replica has registered. Shut the client down when the test ends.
    func startCluster(gate: String, spanTokens: Int = 4, emamba: [String] = [], et5: [String] = []) async throws -> RouterClient {
        try startRouter(gate: gate, spanTokens: spanTokens)
        for id in emamba { try startExpert("emamba", id: id) }
        for id in et5 { try startExpert("et5", id: id) }
        let client = try client()
        try await waitForReplicas(client, emamba: emamba.count, et5: et5.count)
        return client
    }

    /// Waits until the router reports at least these replicas (through its heartbeats).
    func waitForReplicas(_ client: RouterClient, emamba: Int, et5: Int, timeout: TimeInterval = 30) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let s = await client.status()
            if s.routerReachable, s.emambaReplicas >= emamba, s.et5Replicas >= et5 { return }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        XCTFail("replicas did not register in \(timeout) s\n\(allLogs())")
        throw CancellationError()
    }
}

/// An answer collected from the router's event stream.
struct CollectedAnswer {
    var text = ""
    var spans: [SpanResult] = []
    var done: DoneStats?
    var error: WireErrorBody?
}

extension RouterClient {
    func collect(_ request: AnswerRequest) async throws -> CollectedAnswer {
        var answer = CollectedAnswer()
        var seen = Set<UInt32>()
        let (events, continuation) = AsyncStream<AnswerEvent>.makeStream()
        try await submit(request, to: AnswerSink(deliver: { continuation.yield($0) }, close: { continuation.finish() }))
        for await event in events {
            switch event.kind {
            case .span(let s):
                // Merge as the gateway does: span order, duplicates dropped.
                guard !seen.contains(s.spanIndex) else { continue }
                seen.insert(s.spanIndex)
                answer.spans.append(s)
                answer.text += s.text
            case .done(let d): answer.done = d
            case .error(let e): answer.error = e
            }
        }
        return answer
    }
}

func question(_ id: String, _ q: String, context: String = "", maxTokens: UInt32 = 24, forced: PoolKind = .unspecified) -> AnswerRequest {
    AnswerRequest(requestId: id, question: q, context: context, maxNewTokens: maxTokens,
                  policy: Policy(costWeight: 0.5, forced: forced),
                  deadlineUnixMs: UInt64(Date().timeIntervalSince1970 * 1000) + 60_000)
}

/// Closed-loop load (4 clients) through a gateway with the traffic generator: its report and
/// each successful answer's text by request index. `onDone` gets the count of finished requests.
func runLoad(_ base: URL, requests: Int, maxTokens: Int, seed: UInt64, prompts: [Prompt], concurrency: Int = 4,
             stream: Bool = false, onDone: @escaping @Sendable (Int) -> Void = { _ in }) async throws -> (LoadReport, [Int: String]) {
    var plan = LoadPlan(target: base, mode: .closed(concurrency: concurrency))
    plan.stream = stream
    plan.maxRequests = requests
    plan.maxTokens = ValueRange(Double(maxTokens))
    plan.timeoutSeconds = 60
    plan.seed = seed
    var logger = Logger(label: "test.loadgen")
    logger.logLevel = .warning
    let runner = LoadRunner(plan: plan, workload: try Workload(prompts: prompts), logger: logger)
    let answers = Answers()
    runner.onOutcome = { index, outcome in onDone(answers.add(index, outcome)) }
    let report = try await runner.run()
    return (report, answers.all)
}
