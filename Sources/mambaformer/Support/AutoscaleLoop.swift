import Autoscaling
import ClusterConfig
import Foundation
import Logging
import Metrics
import Wire

// The thin loop around `AutoscalePolicy`: ask every router for its pools' load, add the
// actuator's own knowledge (replicas it is starting), let the policy decide, and carry the
// decision out. One loop, two actuators: `up --autoscale` (child processes) and the
// `autoscale` service (systemd units).

/// Starts and drains expert replicas of a pool on the host(s) it manages.
protocol ReplicaActuator: AnyObject {
    /// The replicas of `pool` it has serving or starting (not draining), and draining; nil
    /// when it cannot tell (then the routers' counts stand alone). What it has serving but
    /// the routers do not count yet is capacity still starting.
    func replicas(_ pool: PoolKind) -> (serving: Int, draining: Int)?
    /// Expert replicas of every pool where it acts, draining ones included (the host budget).
    func replicasOnHost() -> Int?
    /// Carries out one decision: start `to - from` replicas, or drain `from - to` (they stop
    /// taking spans, finish their own, then exit). Must not block for long.
    func apply(_ decision: AutoscaleDecision) throws
}

/// Asks routers for `PoolStatus` on their frontends (authorised like a gateway) and sums them.
final class PoolStatusPoller {
    private let context: ZmqContext
    private var sockets: [(endpoint: String, socket: ZmqSocket)] = []

    /// `curves`: CURVE settings per router (in the order of `routers`); nil: plain text.
    init(routers: [String], curves: [CurveClientConfig]?) throws {
        context = try ZmqContext()
        for (i, endpoint) in routers.enumerated() {
            let socket = try ZmqSocket(context: context, type: .dealer, sendHWM: 4, receiveHWM: 64, lingerMs: 0)
            if let curves { try socket.enableCurveClient(curves[i]) }
            try socket.connect(endpoint)
            sockets.append((endpoint, socket))
        }
    }

    deinit {
        for (_, socket) in sockets { socket.close() }
        context.terminate()
    }

    var routers: Int { sockets.count }

    /// Every router's answer within `timeoutMs`, summed, and how many answered. Routers also
    /// send heartbeats to a frontend peer: those are read and ignored.
    func poll(timeoutMs: Int) -> (status: PoolStatus, answered: Int) {
        for (_, socket) in sockets {
            // Answers to an earlier, timed-out question would be counted twice: drop them.
            while (try? socket.receiveEnvelope()) != nil {}
            _ = try? socket.send(Envelope(.poolStatusRequest), to: nil)
        }
        var total = PoolStatus()
        var waiting = Set(sockets.indices)
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(timeoutMs) * 1_000_000
        while !waiting.isEmpty {
            let now = DispatchTime.now().uptimeNanoseconds
            guard now < deadline else { break }
            let order = Array(waiting)
            guard let readable = try? ZmqPoll.poll(order.map { sockets[$0].socket }, timeoutMs: Int((deadline - now) / 1_000_000) + 1)
            else { break }
            for (position, index) in order.enumerated() where readable[position] {
                while let message = try? sockets[index].socket.receiveEnvelope() {
                    guard case .success(let envelope) = message.result, case .poolStatus(let status) = envelope.body else { continue }
                    for pool in [PoolKind.emamba, .et5] {
                        total[pool].spansRunning &+= status[pool].spansRunning
                        total[pool].spansQueued &+= status[pool].spansQueued
                        // Every replica serves every router: replicas are the most any router
                        // sees, not their sum (spans are each router's own, so they add up).
                        total[pool].replicasReady = max(total[pool].replicasReady, status[pool].replicasReady)
                        total[pool].replicasDraining = max(total[pool].replicasDraining, status[pool].replicasDraining)
                        total[pool].capacity = max(total[pool].capacity, status[pool].capacity)
                    }
                    waiting.remove(index)
                    break
                }
            }
        }
        return (total, sockets.count - waiting.count)
    }
}

/// What the autoscaler exports (`autoscale.metrics`): what it wants, what there is, what it did.
final class AutoscaleMetrics {
    private var desired: [PoolKind: Gauge] = [:]
    private var current: [PoolKind: Gauge] = [:]
    private var ongoing: [PoolKind: Gauge] = [:]
    private var decisions: [String: Counter] = [:]
    private let routersAnswering = Gauge(label: "mambaformer_autoscaler_routers_answering")

    init(pools: [PoolKind]) {
        for pool in pools {
            let label = [("pool", "\(pool)")]
            desired[pool] = Gauge(label: "mambaformer_autoscaler_desired_replicas", dimensions: label)
            current[pool] = Gauge(label: "mambaformer_autoscaler_current_replicas", dimensions: label)
            ongoing[pool] = Gauge(label: "mambaformer_autoscaler_ongoing_spans", dimensions: label)
            for direction in ["up", "down"] {
                decisions["\(pool)/\(direction)"] = Counter(label: "mambaformer_autoscaler_decisions_total",
                                                           dimensions: label + [("direction", direction)])
            }
        }
    }

    func observed(_ pool: PoolKind, desired d: Int, current c: Int, ongoing o: Int) {
        desired[pool]?.record(d); current[pool]?.record(c); ongoing[pool]?.record(o)
    }
    func decided(_ decision: AutoscaleDecision) {
        decisions["\(decision.pool)/\(decision.isUp ? "up" : "down")"]?.increment()
    }
    func routers(_ n: Int) { routersAnswering.record(n) }
}

final class AutoscaleLoop {
    let policy: AutoscalePolicy
    private let poller: PoolStatusPoller
    private let actuator: ReplicaActuator
    private let intervalMs: Int
    private let logger: Logger
    private let metrics: AutoscaleMetrics
    private var silentLog = LogRateLimiter(intervalMs: 30_000)
    private var lastTickMs: UInt64 = 0

    init(policy: AutoscalePolicy, poller: PoolStatusPoller, actuator: ReplicaActuator, intervalMs: Int, logger: Logger) {
        self.policy = policy; self.poller = poller; self.actuator = actuator
        self.intervalMs = intervalMs; self.logger = logger
        metrics = AutoscaleMetrics(pools: Array(policy.settings.keys))
    }

    /// One round when one is due (call it often; it returns at once otherwise).
    func tickIfDue() {
        let now = MonotonicClock.nowMs()
        guard now >= lastTickMs &+ UInt64(intervalMs) else { return }
        lastTickMs = now
        tick(now: now)
    }

    private func tick(now: UInt64) {
        let (status, answered) = poller.poll(timeoutMs: min(500, intervalMs / 2))
        metrics.routers(answered)
        // A partial view is no view: a router restarting (or slow) must not look like a pool
        // that lost its replicas or its load. No figures, no decision.
        guard answered == poller.routers else {
            if silentLog.admit("routers", now: now) != nil {
                logger.warning("autoscaler: \(answered) of \(poller.routers) routers answered a pool-status request; keeping the pools as they are")
            }
            return
        }
        var observations: [PoolKind: PoolObservation] = [:]
        for pool in policy.settings.keys {
            let load = status[pool]
            var ready = Int(load.replicasReady), starting = 0, draining = Int(load.replicasDraining)
            if let mine = actuator.replicas(pool) {
                // The actuator's count wins where the routers' lags: a replica it drains may still
                // be counted ready for a moment, one it started is not counted until it registers.
                ready = min(ready, mine.serving)
                starting = mine.serving - ready
                draining = max(draining, mine.draining)
            }
            observations[pool] = PoolObservation(ongoing: Int(load.ongoing), ready: ready, starting: starting, draining: draining)
        }
        let decisions = policy.observe(observations, now: now, onHost: actuator.replicasOnHost())
        for (pool, o) in observations {
            metrics.observed(pool, desired: policy.desired(pool), current: o.current, ongoing: o.ongoing)
        }
        for decision in decisions {
            logger.notice("autoscale", metadata: ["pool": "\(decision.pool)", "from": "\(decision.from)", "to": "\(decision.to)",
                                                  "reason": "\(decision.reason)"])
            metrics.decided(decision)
            do {
                try actuator.apply(decision)
            } catch {
                logger.error("autoscale: could not carry out the decision", metadata: ["pool": "\(decision.pool)", "error": "\(error)"])
            }
        }
    }
}

extension NodeConfiguration {
    /// The policy's settings per pool from the configuration ([autoscale], [autoscale.POOL]),
    /// checked together (`AutoscaleSettings.problem`).
    static func autoscaleSettings(_ cluster: ClusterConfig, pool: PoolKind) throws -> AutoscaleSettings {
        let s = cluster.autoscale(pool: "\(pool)")
        let settings = AutoscaleSettings(
            minReplicas: s.minReplicas, maxReplicas: s.maxReplicas, targetOngoingSpans: s.targetOngoingSpans,
            upscaleDelayMs: UInt64(s.upscaleDelayS) * 1000, downscaleDelayMs: UInt64(s.downscaleDelayS) * 1000,
            lookBackMs: UInt64(s.lookBackS) * 1000, maxStep: s.maxStep)
        if let problem = settings.problem() { throw AutoscaleError.invalidSettings(pool: "\(pool)", problem: problem) }
        return settings
    }

    /// `autoscale.max_replicas_per_host`, 0 meaning one per core.
    static func maxReplicasPerHost(_ cluster: ClusterConfig) -> Int {
        let configured = cluster.int("autoscale.max_replicas_per_host")
        return configured > 0 ? configured : ProcessInfo.processInfo.activeProcessorCount
    }
}

enum AutoscaleError: Error, CustomStringConvertible {
    case invalidSettings(pool: String, problem: String)
    case badRange(String)

    var description: String {
        switch self {
        case .invalidSettings(let pool, let problem): return "[autoscale] for \(pool): \(problem)"
        case .badRange(let text):
            return "--autoscale \(text): expected POOL=MIN-MAX, e.g. emamba=1-4 (pools: \(Schema.pools.joined(separator: ", ")))"
        }
    }
}
