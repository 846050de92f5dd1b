// cluster-bench e2e and replicas: what a whole cluster costs over the same work in one
// process, and what a second replica buys.
import Engine
import Generation
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#endif
import LoadGen
import Logging
import Wire

/// A gateway + router + experts on loopback, killed when this process ends.
final class LocalCluster {
    let dir: URL
    let base: URL
    private var children: [Child] = []

    init(bin: String, model: String, emamba: Int, et5: Int, gate: String, spanTokens: Int, maxConcurrent: Int = 64) throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("cluster-bench-\(getpid())-\(UUID().uuidString.prefix(6))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let frontend = "ipc://\(dir.path)/f", backend = "ipc://\(dir.path)/b"
        let port = Int.random(in: 20000...32000)  // below the ephemeral range used by client sockets
        base = URL(string: "http://127.0.0.1:\(port)")!
        func start(_ name: String, _ arguments: [String]) throws {
            children.append(try Child(bin, arguments + ["--log-level", "warning"], log: dir.appendingPathComponent("\(name).log")))
        }
        try start("router", ["router", "--frontend", frontend, "--backend", backend, "--model", model, "--gate", gate,
                             "--span-tokens", "\(spanTokens)"])
        for (kind, count) in [("emamba", emamba), ("et5", et5)] {
            for i in 0..<count {
                try start("\(kind)-\(i)", ["expert", "--kind", kind, "--model", model, "--router", backend, "--ignore-eos",
                                           "--replica-id", "\(kind)-\(i + 1)", "--threads", "1"])
            }
        }
        try start("gateway", ["gateway", "--listen", "127.0.0.1:\(port)", "--router", frontend,
                               "--max-concurrent", "\(maxConcurrent)", "--max-tokens", "1024"])
        let want = [#""emamba":\#(emamba)"#, #""et5":\#(et5)"#]
        for _ in 0..<1200 {
            if let data = try? Data(contentsOf: base.appendingPathComponent("readyz")),
               want.allSatisfy({ String(decoding: data, as: UTF8.self).contains($0) }) { return }
            Thread.sleep(forTimeInterval: 0.1)
        }
        stop()
        throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: "cluster not ready; logs in \(dir.path)"])
    }

    deinit { stop() }

    func stop() {
        for child in children { child.stop() }
        children = []
    }

    /// What the gateway reports about one answer: its text, its own total time, and the
    /// spans' times as the trace gives them (each measured where the span ran).
    struct Answer {
        var text: String
        var gatewayMs: Double
        var spanMs: [Double]
    }

    /// One blocking POST /v1/answer over a plain socket, as curl would send it. URLSession
    /// (libcurl under a dispatch queue on Linux) added 5-6 ms per request of its own, which
    /// is the client's cost, not the cluster's. The gateway closes the connection after the
    /// answer, so the response is everything up to the close.
    func answer(_ json: String) throws -> Answer {
        func fail(_ why: String) -> Error { CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: why]) }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw fail("socket: errno \(errno)") }
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(base.port!).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw fail("connect: errno \(errno)") }
        let body = Array(json.utf8)
        let request = Array(("POST /v1/answer HTTP/1.1\r\nHost: 127.0.0.1:\(base.port!)\r\n"
            + "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n").utf8) + body
        var sent = 0
        while sent < request.count {
            let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw fail("send: errno \(errno)") }
            sent += n
        }
        var response: [UInt8] = [], buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            response += buffer[0..<n]
        }
        let text = String(decoding: response, as: UTF8.self)
        guard text.hasPrefix("HTTP/1.1 200"), let split = text.range(of: "\r\n\r\n") else { throw fail(text) }
        var payload = Data(text[split.upperBound...].utf8)
        if text[..<split.lowerBound].lowercased().contains("transfer-encoding: chunked") { payload = dechunked(payload) }
        guard let object = try? JSONSerialization.jsonObject(with: payload) as? [String: Any],
              let answer = object["answer"] as? String else { throw fail(text) }
        let total = (object["timings"] as? [String: Any])?["total_ms"] as? Double ?? .nan
        let spans = (object["trace"] as? [[String: Any]] ?? []).compactMap { $0["ms"] as? Double }
        return Answer(text: answer, gatewayMs: total, spanMs: spans)
    }

    /// An HTTP/1.1 chunked body joined back together.
    private func dechunked(_ data: Data) -> Data {
        var out = Data(), rest = data[...]
        while let lineEnd = rest.range(of: Data("\r\n".utf8)),
              let size = Int(String(decoding: rest[..<lineEnd.lowerBound], as: UTF8.self), radix: 16), size > 0 {
            let chunk = lineEnd.upperBound..<min(rest.endIndex, lineEnd.upperBound + size)
            out += rest[chunk]
            rest = rest[min(rest.endIndex, chunk.upperBound + 2)...]
        }
        return out
    }
}

/// The same answers through gateway + router + experts (real processes, HTTP, ZeroMQ) and
/// in this process (`LocalExperts`: the same schedulers, spans and hand-overs, no sockets),
/// interleaved request by request so both see the same machine load.
///
/// The gap is split where it arises: client → gateway and back (HTTP: client time − the
/// gateway's `total_ms`), gateway → router → experts and back outside the
/// spans (`total_ms` − the sum of the trace's span times), and the spans themselves (their
/// sum in the cluster against the in-process answer, which is nearly all span work).
func endToEndBenchmark(bin: String, model: String, tokens: Int, spanTokens: Int, requests: Int) throws {
    let local = try LocalExperts(checkpoint: try MambaformerCheckpoint(root: URL(fileURLWithPath: model)), ignoreEOS: true)
    let cluster = try LocalCluster(bin: bin, model: model, emamba: 1, et5: 1, gate: "alternate", spanTokens: spanTokens)
    defer { cluster.stop() }
    let question = "What is gingivitis?"
    for (name, forced) in [("emamba only", PoolKind.emamba), ("alternating EMamba/ET5", .unspecified)] {
        var inProcess: [Double] = [], throughCluster: [Double] = [], gateway: [Double] = [], spans: [Double] = []
        var same = true
        for i in -2..<requests {  // two warm-up rounds
            let request = AnswerRequest(requestId: "local-\(name)-\(i)", question: question, maxNewTokens: UInt32(tokens),
                                        policy: Policy(costWeight: 0.5, forced: forced))
            var start = nowNs()
            let reference = try local.answer(request, spanTokens: UInt32(spanTokens)) { index, _ in
                forced == .emamba ? .emamba : (index % 2 == 0 ? .emamba : .et5)
            }
            let localMs = Double(nowNs() - start) / 1e6
            let expert = forced == .emamba ? #", "expert": "emamba""# : ""
            start = nowNs()
            let answer = try cluster.answer(#"{"question": "\#(question)", "max_tokens": \#(tokens)\#(expert)}"#)
            let clusterMs = Double(nowNs() - start) / 1e6
            same = same && answer.text == reference.text
            if i >= 0 {
                inProcess.append(localMs); throughCluster.append(clusterMs)
                gateway.append(answer.gatewayMs); spans.append(answer.spanMs.reduce(0, +))
            }
        }
        let a = percentile(inProcess.sorted(), 0.5), b = percentile(throughCluster.sorted(), 0.5)
        // Medians of the per-request differences: where the extra time of each answer went.
        let http = percentile(zip(throughCluster, gateway).map { $0 - $1 }.sorted(), 0.5)
        let dispatch = percentile(zip(gateway, spans).map { $0 - $1 }.sorted(), 0.5)
        let spanWork = percentile(zip(spans, inProcess).map { $0 - $1 }.sorted(), 0.5)
        print(String(format: "{\"bench\":\"e2e\",\"route\":\"%@\",\"tokens\":%d,\"span_tokens\":%d,\"requests\":%d,"
                     + "\"in_process_median_ms\":%.2f,\"cluster_median_ms\":%.2f,\"ratio\":%.3f,\"same_text\":%@,"
                     + "\"gateway_total_median_ms\":%.2f,\"span_sum_median_ms\":%.2f,"
                     + "\"http_client_ms\":%.2f,\"outside_spans_ms\":%.2f,\"spans_minus_in_process_ms\":%.2f}",
                     name, tokens, spanTokens, requests, a, b, b / a, same ? "true" : "false",
                     percentile(gateway.sorted(), 0.5), percentile(spans.sorted(), 0.5), http, dispatch, spanWork))
    }
}

/// Answers per second with 1 and with 2 EMamba replicas under the traffic generator
/// (closed loop, `concurrency` clients, every answer forced to EMamba).
func replicasBenchmark(bin: String, model: String, tokens: Int, requests: Int, concurrency: Int) throws {
    var logger = Logger(label: "cluster-bench.loadgen")
    logger.logLevel = .warning
    var results: [Int: Double] = [:]
    for replicas in [1, 2] {
        let cluster = try LocalCluster(bin: bin, model: model, emamba: replicas, et5: 0, gate: "rule", spanTokens: 16)
        defer { cluster.stop() }
        var plan = LoadPlan(target: cluster.base, mode: .closed(concurrency: concurrency))
        plan.maxTokens = ValueRange(Double(tokens))
        plan.expert = "emamba"
        plan.seed = 3
        plan.maxRequests = requests / 4  // warm-up
        let warm = DispatchSemaphore(value: 0)
        final class Box: @unchecked Sendable { var report: LoadReport?; var error: Error? }
        let box = Box()
        Task {
            do {
                _ = try await LoadRunner(plan: plan, workload: try Workload(prompts: [Prompt(question: "What is gingivitis?")]),
                                         logger: logger).run()
                plan.maxRequests = requests
                box.report = try await LoadRunner(plan: plan, workload: try Workload(prompts: [Prompt(question: "What is gingivitis?")]),
                                                  logger: logger).run()
            } catch { box.error = error }
            warm.signal()
        }
        warm.wait()
        if let error = box.error { throw error }
        guard let report = box.report else { continue }
        results[replicas] = report.throughput.okPerSecond
        print(String(format: "{\"bench\":\"replicas\",\"emamba_replicas\":%d,\"concurrency\":%d,\"tokens\":%d,\"requests\":%d,"
                     + "\"ok\":%d,\"answers_per_s\":%.2f,\"tokens_per_s\":%.1f,\"p50_ms\":%.1f,\"p99_ms\":%.1f}",
                     replicas, concurrency, tokens, requests, report.ok, report.throughput.okPerSecond,
                     report.throughput.tokensPerSecond, report.latencyMs.p50, report.latencyMs.p99))
    }
    if let one = results[1], let two = results[2] {
        print(String(format: "{\"bench\":\"replicas\",\"speedup_2_over_1\":%.2f}", two / one))
    }
}
