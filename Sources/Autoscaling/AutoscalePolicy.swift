import Vocabulary

// How many replicas each expert pool should have, decided from what the routers report.
// A pure state machine in the style of RouterCore: observations and the time in, decisions
// out; no sockets, no processes, no clock of its own. Two actuators use it: `mambaformer up
// --autoscale` (child processes) and `mambaformer autoscale` (systemd units).
//
// What the anchors' bug trackers taught (Ray Serve, Knative's KPA), and what this does about it:
// - The signal is the pool's total demand at the routers (spans running + queued), divided by
//   a per-replica target. A per-replica average drops right after a scale-up and makes the
//   next decision undo it (oscillation); a total does not move when replicas are added.
// - Replicas being started count as coming capacity: no second scale-up for the same demand
//   while the first replicas load their model.
// - Upscale needs the demand sustained for `upscaleDelayMs`; a panic (demand at or above
//   `panicThreshold` times what the ready replicas are sized for, Knative's 2×) scales up at
//   once and blocks every scale-down until the panic has been over for a full look-back.
// - Scale-down needs low demand sustained for `downscaleDelayMs` since the last change in
//   either direction, one replica at a time, and never while replicas are starting.
//   `downscaleDelayMs >= lookBackMs` (checked in `validate`) so that every scale-down rests
//   on a whole window of samples taken after the previous change.
// - The actuator drains a replica before it exits (it stops taking spans, finishes its own),
//   so no request fails because of a scaling decision.

/// One pool's settings (`[autoscale]`, overridden per pool by `[autoscale.emamba]` / `[autoscale.et5]`;
/// their defaults live in the configuration schema).
public struct AutoscaleSettings: Sendable, Equatable {
    public var minReplicas: Int
    public var maxReplicas: Int
    /// Spans running or queued per replica that the pool is sized for.
    public var targetOngoingSpans: Int
    public var upscaleDelayMs: UInt64
    public var downscaleDelayMs: UInt64
    /// The demand is averaged over this window.
    public var lookBackMs: UInt64
    /// Most replicas added in one decision.
    public var maxStep: Int
    /// Demand at or above this many times the ready replicas' target is a panic (Knative's 2).
    public var panicThreshold = 2.0

    public init(minReplicas: Int, maxReplicas: Int, targetOngoingSpans: Int, upscaleDelayMs: UInt64,
                downscaleDelayMs: UInt64, lookBackMs: UInt64, maxStep: Int) {
        self.minReplicas = minReplicas; self.maxReplicas = maxReplicas; self.targetOngoingSpans = targetOngoingSpans
        self.upscaleDelayMs = upscaleDelayMs; self.downscaleDelayMs = downscaleDelayMs; self.lookBackMs = lookBackMs
        self.maxStep = maxStep
    }

    /// Nil when the settings make sense together, else why not (in the settings' own names).
    public func problem() -> String? {
        if minReplicas > maxReplicas { return "min_replicas (\(minReplicas)) is above max_replicas (\(maxReplicas))" }
        if downscaleDelayMs < lookBackMs {
            return "downscale_delay_s (\(downscaleDelayMs / 1000)) is shorter than look_back_s (\(lookBackMs / 1000)): "
                + "a scale-down would rest on samples from before the previous change (thrashing); raise it"
        }
        return nil
    }
}

/// What an actuator knows about one pool at one instant.
public struct PoolObservation: Sendable, Equatable {
    /// Spans running or queued at the routers, summed over routers.
    public var ongoing: Int
    /// Replicas registered and taking spans.
    public var ready: Int
    /// Replicas the actuator started that have not registered yet (coming capacity).
    public var starting: Int
    /// Replicas finishing their spans before they exit.
    public var draining: Int
    public init(ongoing: Int, ready: Int, starting: Int = 0, draining: Int = 0) {
        self.ongoing = ongoing; self.ready = ready; self.starting = starting; self.draining = draining
    }
    /// The replicas that serve or will serve: draining ones do not count.
    public var current: Int { ready + starting }
}

/// One decision for one pool: move from `from` to `to` replicas, and why.
public struct AutoscaleDecision: Sendable, Equatable, CustomStringConvertible {
    public let pool: PoolKind
    public let from: Int
    public let to: Int
    public let reason: String
    public var isUp: Bool { to > from }
    public var description: String { "\(pool) \(from) → \(to): \(reason)" }
}

public final class AutoscalePolicy {
    public let settings: [PoolKind: AutoscaleSettings]
    /// Replicas of every pool on this host, draining ones included (they hold a core until they exit).
    public let maxReplicasPerHost: Int

    private struct PoolState {
        var samples: [(at: UInt64, ongoing: Int)] = []
        var upSince: UInt64?
        var downSince: UInt64?
        var lastChange: UInt64?
        var panicUntil: UInt64 = 0
        var desired = 0
    }
    private var state: [PoolKind: PoolState] = [:]

    public init(settings: [PoolKind: AutoscaleSettings], maxReplicasPerHost: Int) {
        self.settings = settings
        self.maxReplicasPerHost = max(1, maxReplicasPerHost)
    }

    /// The replica count the demand calls for, clamped to the pool's range (for the gauge).
    public func desired(_ pool: PoolKind) -> Int { state[pool]?.desired ?? 0 }

    /// One tick: every managed pool's observation at `now` (ms, any monotonic origin), and the
    /// expert replicas of every pool on the host, draining ones included (`onHost`; nil: the
    /// managed pools' own counts). Returns at most one decision per pool; the actuator
    /// carries it out.
    public func observe(_ observations: [PoolKind: PoolObservation], now: UInt64, onHost: Int? = nil) -> [AutoscaleDecision] {
        var decisions: [AutoscaleDecision] = []
        // The host budget is shared: replicas of every pool, starting and draining included.
        var onHost = onHost ?? observations.values.reduce(0) { $0 + $1.ready + $1.starting + $1.draining }
        for pool in PoolKind.allCases {
            guard let settings = settings[pool], let observation = observations[pool] else { continue }
            guard let decision = decide(pool, settings, observation, now: now, hostRoom: maxReplicasPerHost - onHost) else { continue }
            onHost += decision.to - decision.from
            decisions.append(decision)
        }
        return decisions
    }

    private func decide(_ pool: PoolKind, _ s: AutoscaleSettings, _ o: PoolObservation, now: UInt64,
                        hostRoom: Int) -> AutoscaleDecision? {
        var p = state[pool] ?? PoolState()
        defer { state[pool] = p }
        p.samples.append((now, max(0, o.ongoing)))
        p.samples.removeAll { now >= $0.at &+ s.lookBackMs && $0.at != now }
        let average = Double(p.samples.reduce(0) { $0 + $1.ongoing }) / Double(p.samples.count)
        let target = Double(max(1, s.targetOngoingSpans))
        let panicking = Double(o.ongoing) >= s.panicThreshold * target * Double(max(1, o.ready))
            && Double(o.ongoing) > target * Double(o.current)
        if panicking { p.panicUntil = now &+ s.lookBackMs }
        let inPanic = now < p.panicUntil
        var wanted = Int((average / target).rounded(.up))
        if inPanic { wanted = max(wanted, Int((Double(o.ongoing) / target).rounded(.up))) }
        p.desired = min(max(wanted, s.minReplicas), s.maxReplicas)
        let current = o.current

        func change(to count: Int, _ reason: String) -> AutoscaleDecision {
            // A scale-down keeps `downSince`: the next step waits a whole delay from this one.
            p.upSince = nil; p.lastChange = now
            if count > current { p.downSince = nil }
            return AutoscaleDecision(pool: pool, from: current, to: count, reason: reason)
        }
        func up(to count: Int, _ reason: String) -> AutoscaleDecision? {
            let room = max(0, hostRoom)
            let to = min(count, current + room)
            guard to > current else { return nil }
            let budget = to < count ? " (host budget max_replicas_per_host = \(maxReplicasPerHost))" : ""
            return change(to: to, reason + budget)
        }

        // Outside the range (a start, a changed setting): back into it at once.
        if current < s.minReplicas { return up(to: s.minReplicas, "below min_replicas \(s.minReplicas)") }
        if current > s.maxReplicas, o.starting == 0 { return change(to: current - 1, "above max_replicas \(s.maxReplicas)") }

        if p.desired > current {
            p.downSince = nil
            let since = p.upSince ?? now
            p.upSince = since
            let demand = "\(o.ongoing) spans ongoing (\(formatted(average)) over \(s.lookBackMs / 1000) s) for a target of \(s.targetOngoingSpans) per replica"
            if panicking { return up(to: min(p.desired, current + s.maxStep), "panic: " + demand) }
            guard now >= since &+ s.upscaleDelayMs else { return nil }
            return up(to: min(p.desired, current + s.maxStep), demand)
        }
        p.upSince = nil
        if p.desired < current {
            // Capacity is still coming, or load just spiked: wait.
            guard o.starting == 0, !inPanic else { p.downSince = nil; return nil }
            let since = max(p.downSince ?? now, p.lastChange ?? 0)
            p.downSince = p.downSince ?? now
            guard now >= since &+ s.downscaleDelayMs else { return nil }
            return change(to: current - 1, "\(formatted(average)) spans ongoing over \(s.lookBackMs / 1000) s "
                          + "for \(current) replicas, low for \(s.downscaleDelayMs / 1000) s")
        }
        p.downSince = nil
        return nil
    }

    private func formatted(_ x: Double) -> String {
        let tenths = (x * 10).rounded() / 10
        return tenths == tenths.rounded() ? "\(Int(tenths))" : "\(tenths)"
    }
}
