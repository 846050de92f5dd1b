import Foundation
import LoadGen
import Logging
import TestCommon
import XCTest

/// `mambaformer up`: one command starts a cluster that answers, and never leaves orphans.
final class UpCommandTests: XCTestCase {
    func childPids(_ log: String) -> [Int32] {
        log.components(separatedBy: "pid=").dropFirst().compactMap { Int32($0.prefix { $0.isNumber }) }
    }

    func isAlive(_ pid: Int32) -> Bool {
        // A zombie (exited, not yet reaped) counts as gone.
        guard kill(pid, 0) == 0 else { return false }
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        return !stat.contains(") Z ")
    }

    func startUp(_ harness: ClusterHarness, port: Int) throws -> Process {
        try harness.start("up", ["up", "--model", harness.model.path, "--http", "127.0.0.1:\(port)",
                                 "--emamba", "1", "--et5", "1", "--span-tokens", "4"])
    }

    func waitReady(_ harness: ClusterHarness) -> Bool {
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if harness.log("up").contains("cluster ready") { return true }
            Thread.sleep(forTimeInterval: 0.1)
        }
        return false
    }

    func testUpAnswersAndStopsEverythingOnSigterm() throws {
        let harness = try ClusterHarness()
        let port = ClusterHarness.freePort()
        _ = try startUp(harness, port: port)
        XCTAssertTrue(waitReady(harness), harness.allLogs())
        let curl = Process()
        curl.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        curl.arguments = ["-s", "--max-time", "30", "-X", "POST", "http://127.0.0.1:\(port)/v1/answer",
                          "-H", "content-type: application/json", "--data", #"{"question": "What is gingivitis?", "max_tokens": 8}"#]
        let out = Pipe()
        curl.standardOutput = out
        try curl.run()
        let body = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        curl.waitUntilExit()
        XCTAssertTrue(body.contains("\"trace\""), body)

        let children = childPids(harness.log("up"))
        XCTAssertEqual(children.count, 4, "router, 2 experts, gateway")
        harness.signal("up", SIGTERM)
        XCTAssertEqual(harness.waitForExit("up", timeout: 30), 0, harness.log("up"))
        for pid in children { XCTAssertFalse(isAlive(pid), "child \(pid) outlived `up`") }
    }

    func testChildrenDieWhenUpIsKilled() throws {
        let harness = try ClusterHarness()
        _ = try startUp(harness, port: ClusterHarness.freePort())
        XCTAssertTrue(waitReady(harness), harness.allLogs())
        let children = childPids(harness.log("up"))
        XCTAssertEqual(children.count, 4)
        harness.signal("up", SIGKILL)
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline, children.contains(where: isAlive) { Thread.sleep(forTimeInterval: 0.1) }
        for pid in children { XCTAssertFalse(isAlive(pid), "child \(pid) was orphaned") }
    }

    /// The pid `up` logged for a child (its last start: restarts log `restarted` with a new pid).
    func pid(of child: String, in log: String) -> Int32? {
        log.split(separator: "\n").filter { $0.contains("process=\(child) ") && $0.contains("pid=") }.last
            .flatMap { line in line.components(separatedBy: "pid=").dropFirst().first.flatMap { Int32($0.prefix { $0.isNumber }) } }
    }

    func replicas(_ port: Int) -> (emamba: Int, et5: Int)? {
        guard let data = try? Data(contentsOf: URL(string: "http://127.0.0.1:\(port)/readyz")!),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let r = json["replicas"] as? [String: Int] else { return nil }
        return (r["emamba"] ?? 0, r["et5"] ?? 0)
    }

    /// Like systemd's Restart=on-failure: a replica that dies is started again and the cluster
    /// keeps answering (before, one child's exit stopped the whole cluster).
    func testACrashedReplicaIsRestartedAndTheClusterKeepsServing() throws {
        let harness = try ClusterHarness()
        let port = ClusterHarness.freePort()
        _ = try startUp(harness, port: port)
        XCTAssertTrue(waitReady(harness), harness.allLogs())
        let victim = try XCTUnwrap(pid(of: "emamba-1", in: harness.log("up")))
        kill(victim, SIGKILL)
        let deadline = Date().addingTimeInterval(30)
        var back = false
        while Date() < deadline {
            if let now = pid(of: "emamba-1", in: harness.log("up")), now != victim, replicas(port)?.emamba == 1 { back = true; break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        XCTAssertTrue(back, "emamba-1 was not restarted: \(harness.log("up"))")
        XCTAssertTrue(harness.log("up").contains("restarting"))
        // The new process registered (the router's count alone could still be the dead one's).
        let registered = Date().addingTimeInterval(30)
        func registrations() -> Int { harness.log("up").components(separatedBy: "replica=emamba-1 [RouterNode] replica ready").count - 1 }
        while Date() < registered, registrations() < 2 { Thread.sleep(forTimeInterval: 0.2) }
        XCTAssertGreaterThanOrEqual(registrations(), 2, "the restarted replica registered: \(harness.log("up"))")
        XCTAssertNil(harness.waitForExit("up", timeout: 0.5), "up must keep running")
    }

    func routers(_ port: Int) -> (reachable: Int, configured: Int)? {
        guard let data = try? Data(contentsOf: URL(string: "http://127.0.0.1:\(port)/readyz")!),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let r = json["routers"] as? [String: Int] else { return nil }
        return (r["reachable"] ?? 0, r["configured"] ?? 0)
    }

    /// `up --routers 2`: two routers, every expert serving both, the gateway on both. One router
    /// killed: closed-loop answers keep succeeding, and the supervisor brings it back.
    func testTwoRoutersOneKilledKeepsServingAndComesBack() async throws {
        let harness = try ClusterHarness()
        defer { harness.stopAll() }
        let port = ClusterHarness.freePort()
        try harness.start("up", ["up", "--model", harness.model.path, "--http", "127.0.0.1:\(port)",
                                 "--emamba", "1", "--et5", "1", "--span-tokens", "4", "--routers", "2"])
        XCTAssertTrue(waitReady(harness), harness.allLogs())
        XCTAssertEqual(childPids(harness.log("up")).count, 5, "2 routers, 2 experts, gateway")
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, routers(port)?.reachable != 2 { Thread.sleep(forTimeInterval: 0.1) }
        XCTAssertEqual(routers(port)?.configured, 2)
        XCTAssertEqual(routers(port)?.reachable, 2)

        let victim = try XCTUnwrap(pid(of: "router-1", in: harness.log("up")), harness.log("up"))
        let prompts = ["What is gingivitis?", "What is a molar?", "What is insulin?"].map { Prompt(question: $0) }
        let (report, _) = try await runLoad(URL(string: "http://127.0.0.1:\(port)")!, requests: 60, maxTokens: 16, seed: 3,
                                            prompts: prompts) { done in
            if done == 15 { kill(victim, SIGKILL) }
        }
        XCTAssertEqual(report.errors, 0, "\(report.errorSamples)\n\(harness.log("up"))")
        let back = Date().addingTimeInterval(30)
        while Date() < back, !(pid(of: "router-1", in: harness.log("up")).map { $0 != victim } ?? false && routers(port)?.reachable == 2) {
            Thread.sleep(forTimeInterval: 0.2)
        }
        XCTAssertEqual(routers(port)?.reachable, 2, "router-1 restarted and rejoined: \(harness.log("up"))")
    }

    /// `up --autoscale`: the EMamba pool grows under load and returns to its minimum after the
    /// downscale delay, with no failed request and no scale-down within the delay of a scale-up.
    func testAutoscaleFollowsTheLoadWithoutFailedRequests() async throws {
        let harness = try ClusterHarness()
        let port = ClusterHarness.freePort()
        // Second-scale settings; a target of 2 spans per replica so that 8 clients ask for 3+.
        let environment = ["MAMBAFORMER_AUTOSCALE_UPSCALE_DELAY_S": "1", "MAMBAFORMER_AUTOSCALE_DOWNSCALE_DELAY_S": "4",
                           "MAMBAFORMER_AUTOSCALE_LOOK_BACK_S": "2", "MAMBAFORMER_AUTOSCALE_TARGET_ONGOING_SPANS": "2",
                           "MAMBAFORMER_AUTOSCALE_INTERVAL_MS": "250", "MAMBAFORMER_AUTOSCALE_MAX_REPLICAS_PER_HOST": "4"]
        try harness.start("up", ["up", "--model", harness.model.path, "--http", "127.0.0.1:\(port)",
                                 "--emamba", "1", "--et5", "1", "--span-tokens", "4", "--autoscale", "emamba=1-3"],
                          environment: environment)
        XCTAssertTrue(waitReady(harness), harness.allLogs())

        // Replicas per pool over time, from /readyz, while the load runs and after.
        let started = Date()
        let timeline = ReplicaTimeline()
        let sampler = Task.detached { [self] in
            while !Task.isCancelled {
                if let r = self.replicas(port) { timeline.add(Date().timeIntervalSince(started), r.emamba) }
                try? await Task.sleep(nanoseconds: 250_000_000)
            }
        }
        func load(clients: Int, seconds: Double) async throws -> LoadReport {
            var plan = LoadPlan(target: URL(string: "http://127.0.0.1:\(port)")!, mode: .closed(concurrency: clients))
            plan.durationSeconds = seconds
            plan.maxTokens = ValueRange(32)
            plan.expert = "emamba"
            var logger = Logger(label: "test.loadgen")
            logger.logLevel = .warning
            return try await LoadRunner(plan: plan, workload: try Workload(prompts: [Prompt(question: "What is gingivitis?")]),
                                        logger: logger).run()
        }
        // High load, then a light one that keeps running while the pool shrinks: the drains
        // happen under load.
        let high = try await load(clients: 8, seconds: 10)
        let highEnded = Date().timeIntervalSince(started)
        let light = try await load(clients: 1, seconds: 14)
        // Back to the minimum (two steps of one replica, 4 s of low demand each).
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, replicas(port)?.emamba != 1 || timeline.samples.last?.replicas != 1 {
            try await Task.sleep(nanoseconds: 250_000_000)
        }
        try await Task.sleep(nanoseconds: 1_000_000_000)
        sampler.cancel()

        let samples = timeline.samples
        print("autoscale timeline (s, EMamba replicas), 8 clients 0–\(String(format: "%.1f", highEnded)) s, then 1 client for 14 s: "
              + timeline.changes.map { String(format: "%.1f→%d", $0.at, $0.replicas) }.joined(separator: " "))
        print("load: high \(high.sent) sent, \(high.errors) errors; light \(light.sent) sent, \(light.errors) errors")
        XCTAssertGreaterThan(high.sent, 0)
        XCTAssertEqual(high.errors, 0, "no request fails because of a scale-up: \(high.errorSamples)")
        XCTAssertGreaterThan(light.sent, 0)
        XCTAssertEqual(light.errors, 0, "no request fails because of a drain: \(light.errorSamples)")
        XCTAssertGreaterThanOrEqual(samples.map(\.replicas).max() ?? 0, 2, "the pool grew: \(harness.log("up"))")
        XCTAssertEqual(samples.last?.replicas, 1, "back to min_replicas")
        // No flapping, from the decisions' own log times (1 s resolution): no scale-down within
        // downscale_delay_s (4 s) of a scale-up.
        let decisions = Self.decisions(in: harness.log("up"))
        XCTAssertTrue(decisions.contains { $0.to > $0.from } && decisions.contains { $0.to < $0.from }, "\(decisions)")
        for down in decisions where down.to < down.from {
            if let up = decisions.last(where: { $0.to > $0.from && $0.at <= down.at }) {
                XCTAssertGreaterThanOrEqual(down.at.timeIntervalSince(up.at), 3, "scale-down too soon after a scale-up: \(decisions)")
            }
        }
        for line in harness.log("up").split(separator: "\n") where line.contains("] autoscale") {
            XCTAssertTrue(line.contains("reason="), "each decision says why: \(line)")
        }
    }

    /// The autoscaler's decisions from `up`'s log: time (whole seconds), from, to.
    static func decisions(in log: String) -> [(at: Date, from: Int, to: Int)] {
        let format = ISO8601DateFormatter()
        return log.split(separator: "\n").filter { $0.contains("] autoscale") && $0.contains(" from=") }.compactMap { line in
            let words = line.split(separator: " ")
            func value(_ key: String) -> Int? { words.first { $0.hasPrefix(key + "=") }.flatMap { Int($0.dropFirst(key.count + 1)) } }
            guard let stamp = words.first, let at = format.date(from: String(stamp)), let from = value("from"), let to = value("to")
            else { return nil }
            return (at, from, to)
        }
    }
}
