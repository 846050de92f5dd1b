import ArgumentParser
import Foundation
import LoadGen
import Logging
import Wire

/// `mambaformer loadgen`: drives a gateway with open- or closed-loop traffic and reports
/// latency percentiles, throughput, errors by class and the routing split (see LoadGen).
struct LoadgenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loadgen",
        abstract: "Load-test a gateway (open or closed loop) and report latency and throughput.",
        discussion: """
        Closed loop (default): --concurrency clients send back to back. Open loop: --rate R \
        (Poisson arrivals) or --schedule "step:2,4,8:20s" / "ramp:1-10:60s"; latencies count \
        from each request's scheduled time (coordinated-omission correct). The run ends after \
        --requests or --duration, whichever comes first. Only loopback targets unless --allow-remote.
        --api openai drives any OpenAI-compatible server through /v1/chat/completions instead \
        (ours, llama.cpp's llama-server, vLLM): the same schedules, percentiles and report.
        Example: mambaformer loadgen --concurrency 4 --requests 200 --report out/
        Another server: mambaformer loadgen --api openai --url http://127.0.0.1:8081 --stream --ignore-eos --max-tokens 64
        Compare two runs: mambaformer loadgen --compare before/report.json after/report.json
        """
    )

    @Option(help: "Gateway base URL.")
    var url: String = "http://127.0.0.1:8080"

    @Option(help: "native (our /v1/answer, with the routing split) or openai (/v1/chat/completions of any OpenAI-compatible server).")
    var api: String = "native"

    @Option(help: "OpenAI API: the model to name (default: the first of the server's GET /v1/models).")
    var model: String?

    @Flag(name: .customLong("ignore-eos"), help: "OpenAI API: send \"ignore_eos\": true (vLLM, llama.cpp) so every answer is --max-tokens long.")
    var ignoreEOS = false

    @Option(help: "Closed loop: number of concurrent clients (default 1 when no --rate/--schedule).")
    var concurrency: Int?

    @Option(help: "Open loop: Poisson arrivals at this many requests per second.")
    var rate: Double?

    @Option(help: "Open loop schedule: \"step:R1,R2,...:DUR\" (each rate held DUR) or \"ramp:FROM-TO:DUR\".")
    var schedule: String?

    @Option(name: .customLong("max-inflight"), help: "Open loop: most outstanding requests; later arrivals wait (and that wait counts).")
    var maxInFlight: Int = 1024

    @Option(help: "Stop after this many requests (default 100 when --duration is not given).")
    var requests: Int?

    @Option(help: "Stop issuing after this long, e.g. 60s, 5m (in-flight requests finish).")
    var duration: String?

    @Option(help: "JSONL of {\"question\", \"context\"?} prompts.")
    var workload: String = "data/test.jsonl"

    @Option(name: .customLong("long-share"), help: "Share (0-1) of prompts with a context; default: the file's own mix.")
    var longShare: Double?

    @Option(name: .customLong("max-tokens"), help: "max_tokens per request: a value (16) or a uniform range (8-32).")
    var maxTokens: String = "16"

    @Option(name: .customLong("cost-weight"), help: "cost_weight per request: a value (0.5) or a range (0.2-0.8); default: the gateway's.")
    var costWeight: String?

    @Option(help: "Force one expert: emamba, et5 or auto.")
    var expert: String?

    @Flag(help: "Stream answers (server-sent events): also measures time to first span (first token with --api openai) and per-token latency.")
    var stream = false

    @Option(help: "Seed of the arrivals and prompt choices (same seed, same requests).")
    var seed: UInt64 = 1

    @Option(help: "Per-request timeout, e.g. 30s or 500ms.")
    var timeout: String = "60s"

    @Option(help: "Write report.json and report.html into this folder.")
    var report: String?
    @Option(help: "Write every answer (or its error class) as JSONL {\"index\", \"answer\"|\"error\"} in request order, to compare runs answer by answer. Answers are patient data: keep the file private.")
    var answers: String?

    @Option(name: .customLong("compare"), parsing: .upToNextOption, help: "Print the ratio table of two report.json files (no load is sent).")
    var compare: [String] = []

    @Flag(help: "No progress line.")
    var quiet = false

    @Flag(name: .customLong("allow-remote"), help: "Allow a target that is not a loopback address.")
    var allowRemote = false

    @Option(name: .customLong("token-file"), help: "File holding a bearer token (default: $MAMBAFORMER_TOKEN).")
    var tokenFile: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, warning, error.")
    var logLevel: String = "warning"

    func validate() throws {
        if !compare.isEmpty {
            guard compare.count == 2 else { throw ValidationError("--compare takes two report.json files") }
            return
        }
        if concurrency != nil && (rate != nil || schedule != nil) {
            throw ValidationError("--concurrency (closed loop) and --rate/--schedule (open loop) exclude each other")
        }
        if rate != nil && schedule != nil { throw ValidationError("give --rate or --schedule, not both") }
        guard LoadPlan.API(rawValue: api) != nil else { throw ValidationError("--api \"\(api)\": expected native or openai") }
        if api != "openai" && (model != nil || ignoreEOS) { throw ValidationError("--model and --ignore-eos go with --api openai") }
        if let duration, parseSeconds(duration) == nil {
            throw ValidationError("--duration \"\(duration)\": expected a duration such as 60s, 5m or 500ms")
        }
        if parseSeconds(timeout) == nil {
            throw ValidationError("--timeout \"\(timeout)\": expected a duration such as 30s or 500ms")
        }
    }

    func run() async throws {
        if !compare.isEmpty {
            let a = try LoadReport.load(URL(fileURLWithPath: compare[0]))
            let b = try LoadReport.load(URL(fileURLWithPath: compare[1]))
            print(CompareTable.render(a, b, aName: compare[0], bName: compare[1]), terminator: "")
            return
        }
        let logger = Runtime.bootstrapLogging(logLevel, label: "mambaformer.loadgen")
        let plan = try makePlan()
        let workloadURL = URL(fileURLWithPath: workload)
        let prompts = try Workload(jsonl: workloadURL)
        let runner = LoadRunner(plan: plan, workload: prompts, logger: logger)
        let showProgress = !quiet && isatty(STDERR_FILENO) == 1
        if showProgress {
            runner.onProgress = { p, total in
                let line = "\r[" + String(format: "%5.0fs", p.elapsed) + "] \(p.done)/\(total.map(String.init) ?? "?") done · "
                    + String(format: "%.1f req/s · p50 %.0f ms · p99 %.0f ms · ", p.currentRate, p.p50Ms, p.p99Ms)
                    + "\(p.errors) errors\u{1B}[K"
                FileHandle.standardError.write(Data(line.utf8))
            }
        }
        let recorded = AnswerLog()
        if answers != nil { runner.onOutcome = { index, outcome in recorded.add(index, outcome) } }
        // Ctrl-C / SIGTERM: stop sending, let in-flight requests finish, still write the report.
        let stop = StopFlag()
        installStopSignals(stop)
        let watcher = Task {
            while !Task.isCancelled {
                if stop.isSet { runner.stop(); return }
                try? await Task.sleep(nanoseconds: 100_000_000)
            }
        }
        defer { watcher.cancel() }
        let result = try await runner.run()
        watcher.cancel()
        if showProgress { FileHandle.standardError.write(Data("\n".utf8)) }
        print(summary(result))
        if let answers { try recorded.write(to: answers) }
        if let report {
            let files = try ReportWriter.write(result, to: URL(fileURLWithPath: report))
            print("report: \(files.json.path), \(files.html.path)")
        }
    }

    private func makePlan() throws -> LoadPlan {
        guard let target = URL(string: url) else { throw ValidationError("--url \"\(url)\" is not a URL") }
        let mode: LoadPlan.Mode
        if let rate {
            mode = .open(schedule: .constant(rate), maxInFlight: maxInFlight)
        } else if let schedule {
            mode = .open(schedule: try RateSchedule(parsing: schedule), maxInFlight: maxInFlight)
        } else {
            mode = .closed(concurrency: concurrency ?? 1)
        }
        var plan = LoadPlan(target: target, mode: mode)
        plan.api = LoadPlan.API(rawValue: api) ?? .native
        plan.model = model
        plan.ignoreEOS = ignoreEOS
        plan.durationSeconds = duration.flatMap(parseSeconds)
        plan.maxRequests = requests ?? (duration == nil ? 100 : nil)
        plan.longShare = longShare
        plan.maxTokens = try ValueRange(parsing: maxTokens, option: "--max-tokens", integer: true, within: 1...1_000_000)
        plan.costWeight = try costWeight.map { try ValueRange(parsing: $0, option: "--cost-weight", integer: false, within: 0...1) }
        plan.expert = expert
        plan.stream = stream
        plan.seed = seed
        plan.timeoutSeconds = parseSeconds(timeout) ?? 60
        plan.bearerToken = try readToken()
        plan.allowRemote = allowRemote
        try plan.validate()
        return plan
    }

    private func summary(_ r: LoadReport) -> String {
        var lines = [String(format: "sent %d · ok %d · errors %d · %.2f req/s · %.1f tokens/s · %.1f s",
                            r.sent, r.ok, r.errors, r.throughput.requestsPerSecond, r.throughput.tokensPerSecond,
                            r.durationSeconds)]
        func row(_ name: String, _ p: LoadReport.Percentiles?) {
            guard let p, p.count > 0 else { return }
            lines.append(name.padding(toLength: 13, withPad: " ", startingAt: 0)
                + String(format: " p50 %8.1f  p90 %8.1f  p99 %8.1f  max %8.1f ms", p.p50, p.p90, p.p99, p.max))
        }
        row("latency", r.latencyMs)
        row("service time", r.serviceTimeMs)
        row(r.api == "openai" ? "first token" : "first span", r.ttfsMs)
        row("per token", r.perTokenMs)
        let errors = r.errorsByClass.filter { $0.value > 0 }.sorted { $0.key < $1.key }
        if !errors.isEmpty { lines.append("errors: " + errors.map { "\($0.key) \($0.value)" }.joined(separator: ", ")) }
        let total = max(1, r.tokens.perExpert.values.reduce(0, +))
        if !r.tokens.perExpert.isEmpty {
            lines.append("routing: " + r.tokens.perExpert.sorted { $0.key < $1.key }.map {
                "\($0.key) \($0.value) tokens (" + String(format: "%.1f%%", Double($0.value) * 100 / Double(total)) + ")"
            }.joined(separator: ", "))
        }
        return lines.joined(separator: "\n")
    }

    private func readToken() throws -> String? {
        if let tokenFile {
            guard let data = FileManager.default.contents(atPath: tokenFile),
                  let line = String(data: data, encoding: .utf8)?.split(whereSeparator: \.isNewline)
                      .map({ $0.trimmingCharacters(in: .whitespaces) }).first(where: { !$0.isEmpty && !$0.hasPrefix("#") })
            else { throw ValidationError("no token in \(tokenFile)") }
            return line
        }
        return ProcessInfo.processInfo.environment["MAMBAFORMER_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
    }
}

/// The answers of a run, by request index (`--answers`).
private final class AnswerLog: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [Int: String] = [:]

    func add(_ index: Int, _ outcome: RequestOutcome) {
        var object: [String: Any] = ["index": index]
        switch outcome.result {
        case .ok(let summary): object["answer"] = summary.text
        case .failed(let errorClass, _, _): object["error"] = "\(errorClass)"
        }
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return }
        lock.lock(); defer { lock.unlock() }
        lines[index] = String(decoding: data, as: UTF8.self)
    }

    func write(to path: String) throws {
        lock.lock(); defer { lock.unlock() }
        let text = lines.keys.sorted().map { lines[$0]! + "\n" }.joined()
        FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600])
    }
}
