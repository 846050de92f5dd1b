import Autoscaling
import Vocabulary
import XCTest

/// The policy with a hand-held clock: each failure the anchors' trackers report is a case here.
final class AutoscalePolicyTests: XCTestCase {
    func settings(min: Int = 1, max: Int = 4, target: Int = 8, up: UInt64 = 3_000, down: UInt64 = 10_000,
                  lookBack: UInt64 = 5_000, step: Int = 2) -> AutoscaleSettings {
        AutoscaleSettings(minReplicas: min, maxReplicas: max, targetOngoingSpans: target, upscaleDelayMs: up,
                          downscaleDelayMs: down, lookBackMs: lookBack, maxStep: step)
    }

    /// A simulated pool: an actuator that starts replicas (ready after `startupMs`) and drains
    /// them (gone after `drainMs`), driven by the policy once a second.
    final class Simulation {
        let policy: AutoscalePolicy
        var ready: Int
        var starting: [UInt64] = []   // ready at
        var draining: [UInt64] = []   // gone at
        var log: [(at: UInt64, decision: AutoscaleDecision)] = []
        let startupMs: UInt64, drainMs: UInt64
        init(_ policy: AutoscalePolicy, ready: Int, startupMs: UInt64 = 2_000, drainMs: UInt64 = 1_000) {
            self.policy = policy; self.ready = ready; self.startupMs = startupMs; self.drainMs = drainMs
        }
        func run(from: UInt64, to: UInt64, demand: (UInt64) -> Int) {
            var now = from
            while now <= to {
                ready += starting.filter { $0 <= now }.count
                starting.removeAll { $0 <= now }
                draining.removeAll { $0 <= now }
                let o = PoolObservation(ongoing: demand(now), ready: ready, starting: starting.count, draining: draining.count)
                for d in policy.observe([.emamba: o], now: now) {
                    log.append((now, d))
                    if d.to > d.from { starting += Array(repeating: now + startupMs, count: d.to - d.from) }
                    else { ready -= d.from - d.to; draining += Array(repeating: now + drainMs, count: d.from - d.to) }
                }
                now += 1_000
            }
        }
        var replicas: Int { ready + starting.count }
    }

    func testSustainedDemandScalesUpAfterTheDelayNotBefore() {
        let policy = AutoscalePolicy(settings: [.emamba: settings()], maxReplicasPerHost: 8)
        let sim = Simulation(policy, ready: 1)
        sim.run(from: 0, to: 2_000) { _ in 12 }   // 1.5× one replica: wanted 2, not a panic
        XCTAssertTrue(sim.log.isEmpty, "no decision inside the upscale delay: \(sim.log)")
        sim.run(from: 3_000, to: 3_000) { _ in 12 }
        XCTAssertEqual(sim.log.map(\.decision.to), [2])
        XCTAssertEqual(policy.desired(.emamba), 2)
    }

    func testAShortBurstShorterThanTheDelayChangesNothing() {
        let policy = AutoscalePolicy(settings: [.emamba: settings()], maxReplicasPerHost: 8)
        let sim = Simulation(policy, ready: 2)
        // 12 spans: two replicas' worth; one second at 24 is not a sustained demand (nor a panic).
        sim.run(from: 0, to: 30_000) { t in t == 5_000 ? 24 : 12 }
        XCTAssertTrue(sim.log.isEmpty, "\(sim.log)")
    }

    func testPanicScalesUpAtOnceAndBlocksScaleDown() {
        let policy = AutoscalePolicy(settings: [.emamba: settings(step: 4)], maxReplicasPerHost: 8)
        let sim = Simulation(policy, ready: 1)
        sim.run(from: 0, to: 0) { _ in 30 }       // 3.75× one replica
        XCTAssertEqual(sim.log.map(\.decision.to), [4])
        XCTAssertTrue(sim.log[0].decision.reason.hasPrefix("panic"))
        // The load vanishes at once: no scale-down while the panic is recent (a look-back),
        // nor within the downscale delay of the scale-up.
        sim.run(from: 1_000, to: 9_000) { _ in 0 }
        XCTAssertEqual(sim.log.count, 1, "\(sim.log)")
        // A panic seen again later (replicas ready now) keeps blocking for a look-back from then.
        let other = AutoscalePolicy(settings: [.emamba: settings(down: 5_000, lookBack: 5_000)], maxReplicasPerHost: 8)
        _ = other.observe([.emamba: PoolObservation(ongoing: 80, ready: 4)], now: 0)        // panic with 4 ready
        var downs: [UInt64] = []
        for t in stride(from: UInt64(1_000), through: 20_000, by: 1_000) {
            if !other.observe([.emamba: PoolObservation(ongoing: 0, ready: 4)], now: t).isEmpty { downs.append(t) }
        }
        // Low demand from t = 3 s wants fewer; the panic holds that until 5 s, then a whole delay.
        XCTAssertEqual(downs.first, 10_000, "no scale-down inside the panic's look-back: \(downs)")
    }

    func testStartingReplicasCountAsComingCapacity() {
        let policy = AutoscalePolicy(settings: [.emamba: settings()], maxReplicasPerHost: 8)
        // Slow start-up: replicas take 20 s to load, demand stays.
        let sim = Simulation(policy, ready: 1, startupMs: 20_000)
        sim.run(from: 0, to: 25_000) { _ in 24 }
        XCTAssertEqual(sim.replicas, 3, "\(sim.log)")
        XCTAssertEqual(sim.log.count, 1, "one decision for one demand: \(sim.log)")
    }

    func testScaleDownOneStepAtATimeAfterSustainedLowLoad() {
        let policy = AutoscalePolicy(settings: [.emamba: settings()], maxReplicasPerHost: 8)
        let sim = Simulation(policy, ready: 3)
        sim.run(from: 0, to: 9_000) { _ in 0 }
        XCTAssertTrue(sim.log.isEmpty, "inside the downscale delay")
        sim.run(from: 10_000, to: 40_000) { _ in 0 }
        XCTAssertEqual(sim.log.map(\.decision.to), [2, 1])
        XCTAssertEqual(sim.log.map(\.at), [10_000, 20_000], "each step waits a whole delay")
        XCTAssertEqual(sim.replicas, 1, "never below min_replicas")
    }

    /// The flapping rule: no scale-down within downscale_delay of a scale-up, even when
    /// the load vanishes right after it.
    func testNoScaleDownWithinTheDelayOfAScaleUp() {
        let policy = AutoscalePolicy(settings: [.emamba: settings()], maxReplicasPerHost: 8)
        let sim = Simulation(policy, ready: 1)
        sim.run(from: 0, to: 60_000) { t in t < 6_000 ? 20 : 0 }
        let ups = sim.log.filter { $0.decision.isUp }, downs = sim.log.filter { !$0.decision.isUp }
        XCTAssertFalse(ups.isEmpty)
        XCTAssertFalse(downs.isEmpty)
        for down in downs {
            for up in ups where up.at < down.at { XCTAssertGreaterThanOrEqual(down.at - up.at, 10_000, "\(sim.log)") }
        }
        XCTAssertEqual(sim.replicas, 1)
    }

    /// A steady demand settles on one count and stays: a per-replica signal would oscillate.
    func testSteadyDemandDoesNotOscillate() {
        let policy = AutoscalePolicy(settings: [.emamba: settings()], maxReplicasPerHost: 8)
        let sim = Simulation(policy, ready: 1)
        sim.run(from: 0, to: 300_000) { _ in 20 }
        XCTAssertEqual(sim.replicas, 3)
        XCTAssertTrue(sim.log.allSatisfy(\.decision.isUp), "\(sim.log)")
        XCTAssertLessThanOrEqual(sim.log.count, 2)
    }

    func testNoScaleDownWhileReplicasAreStarting() {
        let policy = AutoscalePolicy(settings: [.emamba: settings(down: 5_000)], maxReplicasPerHost: 8)
        var decisions: [AutoscaleDecision] = []
        for t in stride(from: UInt64(0), through: 20_000, by: 1_000) {
            decisions += policy.observe([.emamba: PoolObservation(ongoing: 0, ready: 3, starting: 1)], now: t)
        }
        XCTAssertTrue(decisions.isEmpty, "\(decisions)")
    }

    func testTheHostBudgetIsSharedByBothPools() {
        let policy = AutoscalePolicy(settings: [.emamba: settings(step: 4), .et5: settings(step: 4)], maxReplicasPerHost: 4)
        let decisions = policy.observe([.emamba: PoolObservation(ongoing: 40, ready: 1),
                                        .et5: PoolObservation(ongoing: 40, ready: 1, draining: 1)], now: 0)
        // On the host: 1 + 1 + 1 draining = 3 of 4; emamba takes the last place, et5 gets none.
        XCTAssertEqual(decisions.map(\.pool), [.emamba])
        XCTAssertEqual(decisions.first?.to, 2)
        XCTAssertTrue(decisions.first?.reason.contains("max_replicas_per_host") ?? false)
    }

    /// The actuator may know more replicas on the host than the managed pools (an unmanaged
    /// pool's): the budget counts them.
    func testTheHostBudgetCountsWhatTheActuatorSees() {
        let policy = AutoscalePolicy(settings: [.emamba: settings(step: 4)], maxReplicasPerHost: 4)
        let decisions = policy.observe([.emamba: PoolObservation(ongoing: 40, ready: 1)], now: 0, onHost: 3)
        XCTAssertEqual(decisions.map(\.to), [2], "1 EMamba + 2 others on the host: one place left")
        XCTAssertTrue(policy.observe([.emamba: PoolObservation(ongoing: 40, ready: 2)], now: 1_000, onHost: 4).isEmpty)
    }

    /// A router's figures are only added up and divided: an absurd demand (a hostile or broken
    /// router reporting UInt32.max spans) asks for max_replicas, no more, and nothing overflows.
    func testAnAbsurdDemandIsClampedToTheRange() {
        let policy = AutoscalePolicy(settings: [.emamba: settings(step: 64)], maxReplicasPerHost: 1024)
        let decisions = policy.observe([.emamba: PoolObservation(ongoing: Int(UInt32.max) * 2, ready: 1)], now: 0)
        XCTAssertEqual(decisions.map(\.to), [4])
        XCTAssertEqual(policy.desired(.emamba), 4)
    }

    func testBackIntoTheRangeAtOnce() {
        let policy = AutoscalePolicy(settings: [.emamba: settings(min: 2, max: 3)], maxReplicasPerHost: 8)
        XCTAssertEqual(policy.observe([.emamba: PoolObservation(ongoing: 0, ready: 0)], now: 0).map(\.to), [2])
        let other = AutoscalePolicy(settings: [.emamba: settings(min: 2, max: 3)], maxReplicasPerHost: 8)
        XCTAssertEqual(other.observe([.emamba: PoolObservation(ongoing: 0, ready: 5)], now: 0).map(\.to), [4])
    }

    func testSettingsThatWouldThrashAreRefused() {
        XCTAssertNotNil(settings(down: 1_000, lookBack: 5_000).problem())
        XCTAssertNotNil(settings(min: 3, max: 2).problem())
        XCTAssertNil(settings().problem())
    }
}
