import ClusterConfig
import XCTest

/// `mambaformer scale`: counting instances from systemctl's output and planning the calls.
final class ScalePlanTests: XCTestCase {
    /// Answers list-units from a fixed table of instances and records every call.
    final class FakeSystemctl: SystemctlRunner {
        var units: [(name: String, active: String, sub: String)]
        var calls: [[String]] = []
        var failOn: String?
        init(_ units: [(String, String, String)]) { self.units = units.map { (name: $0.0, active: $0.1, sub: $0.2) } }

        func run(_ arguments: [String]) throws -> (status: Int32, output: String, error: String) {
            calls.append(arguments)
            if let failOn, arguments.contains(failOn) { return (1, "", "Failed to start: Unit not found.") }
            guard arguments.contains("list-units"), let pattern = arguments.last else { return (0, "", "") }
            let prefix = String(pattern.dropLast("*.service".count))
            let lines = units.filter { "mambaformer-expert@\($0.name).service".hasPrefix(prefix) }.map {
                "mambaformer-expert@\($0.name).service loaded \($0.active) \($0.sub) MambaFormer expert replica \($0.name)"
            }
            return (0, lines.joined(separator: "\n") + "\n", "")
        }
    }

    func testRunningInstancesCountActiveAndRestartingOnly() {
        let output = """
            mambaformer-expert@emamba-1.service loaded active running MambaFormer expert replica emamba-1
            mambaformer-expert@emamba-2.service loaded failed failed MambaFormer expert replica emamba-2
            mambaformer-expert@emamba-3.service loaded activating auto-restart MambaFormer expert replica emamba-3
            mambaformer-expert@emamba-4.service loaded inactive dead MambaFormer expert replica emamba-4
            ● mambaformer-expert@emamba-5.service loaded active running MambaFormer expert replica emamba-5
            mambaformer-expert@et5-1.service loaded active running MambaFormer expert replica et5-1
            """
        XCTAssertEqual(ScalePlan.runningInstances(listOutput: output, pool: "emamba"), ["emamba-1", "emamba-3", "emamba-5"])
        XCTAssertEqual(ScalePlan.runningInstances(listOutput: output, pool: "et5"), ["et5-1"])
    }

    /// What the autoscaler reads: activating units are coming capacity, deactivating ones drain.
    func testInstanceStatesForTheAutoscaler() throws {
        let output = """
            mambaformer-expert@emamba-1.service loaded active running MambaFormer expert replica emamba-1
            mambaformer-expert@emamba-2.service loaded activating start MambaFormer expert replica emamba-2
            mambaformer-expert@emamba-3.service loaded deactivating stop-sigterm MambaFormer expert replica emamba-3
            mambaformer-expert@emamba-4.service loaded inactive dead MambaFormer expert replica emamba-4
            """
        let s = ScalePlan.instanceStates(listOutput: output, pool: "emamba")
        XCTAssertEqual(s.running, ["emamba-1", "emamba-2"])
        XCTAssertEqual(s.starting, ["emamba-2"])
        XCTAssertEqual(s.draining, ["emamba-3"])
        // Start and stop without enabling (a reboot keeps the operator's count) and without waiting.
        let up = try ScalePlan(pool: "emamba", running: s.running, target: 3)
        XCTAssertEqual(up.transientCommands, [["start", "--no-block", "mambaformer-expert@emamba-3.service"]])
        let down = try ScalePlan(pool: "emamba", running: s.running, target: 1)
        XCTAssertEqual(down.transientCommands, [["stop", "--no-block", "mambaformer-expert@emamba-2.service"]])
    }

    func testScaleUpFillsTheLowestFreeNumbers() throws {
        let plan = try ScalePlan(pool: "emamba", running: ["emamba-1", "emamba-3"], target: 4)
        XCTAssertEqual(plan.toStart, ["emamba-2", "emamba-4"])
        XCTAssertEqual(plan.toStop, [])
        XCTAssertEqual(plan.commands, [["enable", "--now", "mambaformer-expert@emamba-2.service", "mambaformer-expert@emamba-4.service"]])
    }

    func testScaleDownStopsTheHighestNumbersFirst() throws {
        let plan = try ScalePlan(pool: "et5", running: ["et5-2", "et5-10", "et5-1", "et5-manual"], target: 2)
        XCTAssertEqual(plan.toStop, ["et5-10", "et5-2"])
        XCTAssertEqual(plan.commands, [["disable", "--now", "mambaformer-expert@et5-10.service", "mambaformer-expert@et5-2.service"]])
        let toZero = try ScalePlan(pool: "et5", running: ["et5-2", "et5-manual", "et5-1"], target: 0)
        XCTAssertEqual(toZero.toStop, ["et5-2", "et5-1", "et5-manual"])
    }

    func testNothingToDoAtTheTarget() throws {
        XCTAssertEqual(try ScalePlan(pool: "emamba", running: ["emamba-1", "emamba-2"], target: 2).commands, [])
    }

    func testInvalidPoolAndCount() {
        XCTAssertThrowsError(try ScalePlan(pool: "gpt", running: [], target: 1)) { XCTAssertEqual($0 as? ScaleError, .unknownPool("gpt")) }
        XCTAssertThrowsError(try ScalePlan(pool: "et5", running: [], target: -1)) { XCTAssertEqual($0 as? ScaleError, .invalidCount(-1)) }
    }

    func testScalerListsPlansAndApplies() throws {
        let fake = FakeSystemctl([("emamba-1", "active", "running"), ("emamba-2", "active", "running"),
                                  ("emamba-3", "failed", "failed"), ("et5-1", "active", "running")])
        let scaler = Scaler(runner: fake)
        let plan = try scaler.plan(pool: "emamba", target: 4)
        XCTAssertEqual(fake.calls, [["list-units", "--type=service", "--all", "--plain", "--no-legend", "--no-pager",
                                     "mambaformer-expert@emamba-*.service"]])
        XCTAssertEqual(plan.running, ["emamba-1", "emamba-2"])
        XCTAssertEqual(plan.toStart, ["emamba-3", "emamba-4"], "the failed emamba-3 is started again")
        XCTAssertEqual(scaler.commandLines(plan),
                       ["systemctl enable --now mambaformer-expert@emamba-3.service mambaformer-expert@emamba-4.service"])
        try scaler.apply(plan)
        XCTAssertEqual(fake.calls.last, ["enable", "--now", "mambaformer-expert@emamba-3.service", "mambaformer-expert@emamba-4.service"])
    }

    func testRemoteHostAndFailureReporting() throws {
        let fake = FakeSystemctl([("et5-1", "active", "running")])
        fake.failOn = "enable"
        let scaler = Scaler(runner: fake, host: "root@expert-2")
        let plan = try scaler.plan(pool: "et5", target: 2)
        XCTAssertEqual(fake.calls.first?.prefix(2), ["-H", "root@expert-2"])
        XCTAssertEqual(scaler.commandLines(plan), ["systemctl -H root@expert-2 enable --now mambaformer-expert@et5-2.service"])
        XCTAssertThrowsError(try scaler.apply(plan)) { error in
            XCTAssertTrue("\(error)".contains("Unit not found"), "\(error)")
        }
    }
}
