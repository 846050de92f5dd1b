import Foundation
import GatewayClient
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Runs a plan against the gateway and returns the report. Use one runner per run.
///
///     let report = try await LoadRunner(plan: plan, workload: workload).run()
// Sendable: configured before `run()`; during the run only LoadStats (locked) and the NIO
// event loops (each its own channels) change.
public final class LoadRunner: @unchecked Sendable {
    public let plan: LoadPlan
    public let workload: Workload
    /// Called about once a second while the run is going (the CLI's progress line).
    public var onProgress: (@Sendable (LoadStats.Progress, Int?) -> Void)?
    private let group: EventLoopGroup
    private let logger: Logger
    private let stopped = NIOLockedValueBox(false)

    /// `group`: the event loops the HTTP connections run on (default: NIO's shared one).
    public init(plan: LoadPlan, workload: Workload, group: EventLoopGroup? = nil,
                logger: Logger = Logger(label: "mambaformer.loadgen")) {
        self.plan = plan
        self.workload = workload
        self.group = group ?? MultiThreadedEventLoopGroup.singleton
        self.logger = logger
    }

    /// Stops issuing new requests (e.g. on Ctrl-C); in-flight ones finish and are reported.
    public func stop() { stopped.withLockedValue { $0 = true } }
    private var isStopped: Bool { stopped.withLockedValue { $0 } }

    /// Called with every request's index and outcome as it completes (from any task).
    public var onOutcome: (@Sendable (Int, RequestOutcome) -> Void)?

    public func run() async throws -> LoadReport {
        try plan.validate()
        let model = try await resolvedModel()
        let exchange = try AnswerExchange(target: plan.target, api: plan.api, model: model ?? "", ignoreEOS: plan.ignoreEOS,
                                          token: plan.bearerToken, group: group)
        // Whole seconds: report.json then round-trips exactly (ISO 8601 without fractions).
        let startedAt = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        let start = monotonicNs()
        let stats = LoadStats(startNs: start)
        let endNs: UInt64? = plan.durationSeconds.map { start + UInt64($0 * 1e9) }
        logger.debug("load test starting", metadata: ["target": "\(plan.target)", "mode": "\(plan.mode)"])

        let progressTask = Task { [onProgress, plan] in
            guard let onProgress else { return }
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: 1_000_000_000)
                if Task.isCancelled { break }
                onProgress(stats.progress(), plan.maxRequests)
            }
        }
        defer { progressTask.cancel() }
        // Replicas per pool once a second (the gateway's /readyz), for the report's chart of
        // what an autoscaler did; nothing when the gateway does not say.
        let replicaSamples = NIOLockedValueBox<[LoadReport.ReplicaPoint]>([])
        // Never cancelled, stopped by a flag: cancelling a task inside URLSession's async API
        // can deadlock swift-corelibs-foundation (the cancellation handler waits for the
        // session's queue while that queue waits to resume the task). Seen as a hung test run.
        let replicasDone = NIOLockedValueBox(false)
        let replicaTask = Task { [plan] in
            let client = GatewayClient(baseURL: plan.target)
            while !replicasDone.withLockedValue({ $0 }) {
                if let r = await client.replicas() {
                    let t = Double(monotonicNs() - start) / 1e9
                    replicaSamples.withLockedValue { $0.append(.init(t: (t * 10).rounded() / 10, emamba: r.emamba, et5: r.et5)) }
                }
                for _ in 0..<10 where !replicasDone.withLockedValue({ $0 }) {
                    try? await Task.sleep(nanoseconds: 100_000_000)
                }
            }
        }
        defer { replicasDone.withLockedValue { $0 = true } }

        let issue = { @Sendable (index: Int, intendedNs: UInt64) async in
            let body = self.plan.body(index, from: self.workload)
            stats.recordSent()
            let outcome = await exchange.run(body, requestId: "loadgen-\(self.plan.seed)-\(index)",
                                             intendedNs: intendedNs, timeout: self.plan.timeoutSeconds)
            stats.record(outcome)
            self.onOutcome?(index, outcome)
        }

        switch plan.mode {
        case .closed(let concurrency):
            let counter = NIOLockedValueBox(0)
            await withDiscardingTaskGroup { group in
                for _ in 0..<concurrency {
                    group.addTask {
                        while true {
                            let index: Int? = counter.withLockedValue { next in
                                if let max = self.plan.maxRequests, next >= max { return nil }
                                defer { next += 1 }
                                return next
                            }
                            guard let index, !self.isStopped, !Task.isCancelled else { return }
                            let now = monotonicNs()
                            if let endNs, now >= endNs { return }
                            await issue(index, now)
                        }
                    }
                }
            }
        case .open(let schedule, let maxInFlight):
            let slots = AsyncSlots(maxInFlight)
            await withDiscardingTaskGroup { group in
                var arrivals = PoissonArrivals(schedule: schedule, seed: plan.seed)
                var index = 0
                while let offset = arrivals.next() {
                    if let max = plan.maxRequests, index >= max { break }
                    let intended = start + UInt64(offset * 1e9)
                    if let endNs, intended >= endNs { break }
                    // Sleep in slices so that stop() is noticed even at low rates.
                    while !isStopped && !Task.isCancelled {
                        let now = monotonicNs()
                        guard intended > now else { break }
                        try? await Task.sleep(nanoseconds: min(intended - now, 100_000_000))
                    }
                    if isStopped || Task.isCancelled { break }
                    // Waiting here delays the send but not the clock: latency counts from `intended`.
                    await slots.acquire()
                    let i = index
                    group.addTask {
                        await issue(i, intended)
                        await slots.release()
                    }
                    index += 1
                }
            }
        }
        progressTask.cancel()
        replicasDone.withLockedValue { $0 = true }
        _ = replicaTask
        var report = stats.report(plan: plan, workload: workload.source, startedAt: startedAt)
        report.model = model
        let replicas = replicaSamples.withLockedValue { $0 }
        report.replicas = replicas.isEmpty ? nil : replicas
        logger.debug("load test done", metadata: ["sent": "\(report.sent)", "ok": "\(report.ok)", "errors": "\(report.errors)"])
        return report
    }
}

extension LoadRunner {
    /// The OpenAI API's `model`: the plan's, else the first the server lists (as vLLM's and
    /// llmperf's benchmarks ask for one; every OpenAI server lists what it serves).
    func resolvedModel() async throws -> String? {
        guard plan.api == .openai else { return nil }
        if let model = plan.model { return model }
        let models: [String]
        do { models = try await GatewayClient(baseURL: plan.target, token: plan.bearerToken, timeout: 10).models() } catch {
            throw LoadGenError.noModel(target: plan.target.absoluteString, reason: "\(error)")
        }
        guard let first = models.first else {
            throw LoadGenError.noModel(target: plan.target.absoluteString, reason: "GET /v1/models lists none")
        }
        return first
    }
}

/// A counting semaphore for tasks: the open loop's in-flight bound.
actor AsyncSlots {
    private var free: Int
    private var waiters: [CheckedContinuation<Void, Never>] = []

    init(_ count: Int) { free = count }

    func acquire() async {
        if free > 0 { free -= 1; return }
        await withCheckedContinuation { waiters.append($0) }
    }

    func release() {
        if waiters.isEmpty { free += 1 } else { waiters.removeFirst().resume() }
    }
}
