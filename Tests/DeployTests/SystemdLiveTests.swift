import Foundation
import TestCommon
import XCTest

/// The deployment path under a real systemd: scripts/systemd-sandbox.sh boots systemd as PID 1
/// of its own namespaces over a copy-on-write overlay of / (nothing reaches the machine), and
/// this test drives the installed units the way an operator would: install, readiness, scale,
/// restart after a crash, drain under load, a router restart under load, journald hygiene and
/// the autoscaler service. Root only (CI runs as root).
final class SystemdLiveTests: XCTestCase {
    /// The namespace's systemd, and commands run inside it through nsenter.
    final class Sandbox {
        let state: URL
        let launcher: Process
        let pid: Int32

        init() throws {
            state = FileManager.default.temporaryDirectory.appendingPathComponent("mf-systemd-\(UUID().uuidString.prefix(8))")
            launcher = Process()
            launcher.executableURL = URL(fileURLWithPath: "/bin/bash")
            launcher.arguments = [TestPaths.repositoryRoot.appendingPathComponent("scripts/systemd-sandbox.sh").path, state.path]
            let log = FileHandle(forWritingAtPath: "/dev/null")
            launcher.standardOutput = log
            launcher.standardError = log
            try launcher.run()
            // The namespace's PID 1 (bash, then chroot, then systemd, one exec after another) is the
            // child of `unshare` whose innermost pid is 1 (`NSpid: <host pid> 1`); unshare may have
            // other, short-lived children.
            var found: Int32?
            let deadline = Date().addingTimeInterval(10)
            while found == nil, Date() < deadline {
                found = Self.namespaceInit(under: launcher.processIdentifier)
                if found == nil { Thread.sleep(forTimeInterval: 0.05) }
            }
            guard let found else {
                launcher.terminate()
                // As root (the only case that gets here) the sandbox must start: a failure, not a skip.
                throw SandboxError("scripts/systemd-sandbox.sh started no namespace PID 1 within 10 s (unshare refused?)")
            }
            pid = found
        }

        static func namespaceInit(under parent: Int32) -> Int32? {
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
            for entry in entries {
                guard let candidate = Int32(entry),
                      let status = try? String(contentsOfFile: "/proc/\(candidate)/status", encoding: .utf8) else { continue }
                let fields = Dictionary(status.split(separator: "\n").compactMap { line -> (String, String)? in
                    guard let colon = line.firstIndex(of: ":") else { return nil }
                    return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
                }, uniquingKeysWith: { a, _ in a })
                guard fields["PPid"] == "\(parent)", let nspid = fields["NSpid"]?.split(whereSeparator: { $0 == " " || $0 == "\t" }),
                      nspid.count >= 2, nspid.last == "1" else { continue }
                return candidate
            }
            return nil
        }

        /// SIGKILL to the namespace's PID 1 ends every process in it.
        func destroy() {
            kill(pid, SIGKILL)
            let deadline = Date().addingTimeInterval(15)
            while launcher.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
            if launcher.isRunning {
                // PID 1 changed under us (never seen): end whatever init the namespace has now.
                if let other = Self.namespaceInit(under: launcher.processIdentifier) { kill(other, SIGKILL) }
                kill(launcher.processIdentifier, SIGKILL)
            }
            try? FileManager.default.removeItem(at: state)
        }

        @discardableResult
        func run(_ command: [String], environment: [String: String] = [:]) throws -> CommandRun {
            let env = environment.map { "\($0.key)=\($0.value)" }.sorted()
            return try runCommand("/usr/bin/nsenter", ["-t", "\(pid)", "-a", "-r", "-w", "/usr/bin/env"] + env + command)
        }

        func shell(_ script: String) throws -> CommandRun { try run(["/bin/bash", "-c", script]) }

        func waitUntil(_ what: String, timeout: TimeInterval = 60, _ condition: () throws -> Bool) throws {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                if try condition() { return }
                Thread.sleep(forTimeInterval: 0.25)
            }
            XCTFail("timed out waiting for \(what)")
        }

        func readyz() -> (emamba: Int, et5: Int)? {
            guard let r = try? run(["curl", "-s", "--max-time", "2", "http://127.0.0.1:8080/readyz"]),
                  let json = try? JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any],
                  json["status"] as? String == "ready", let replicas = json["replicas"] as? [String: Int] else { return nil }
            return (replicas["emamba"] ?? 0, replicas["et5"] ?? 0)
        }

        func property(_ unit: String, _ name: String) -> String {
            ((try? run(["systemctl", "show", "-p", name, "--value", unit]))?.out ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        }

        /// `mambaformer loadgen` inside, from the repository's folder (its default workload);
        /// the summary line's figures.
        func load(_ arguments: [String]) throws -> (sent: Int, ok: Int, errors: Int, output: String) {
            let r = try shell("cd /mnt/repo && /usr/local/bin/mambaformer loadgen --url http://127.0.0.1:8080 --max-tokens 16 "
                              + arguments.joined(separator: " ") + " 2>&1")
            func figure(_ name: String) -> Int {
                guard let range = r.out.range(of: "\(name) ") else { return -1 }
                return Int(r.out[range.upperBound...].prefix { $0.isNumber }) ?? -1
            }
            return (figure("sent"), figure("ok"), figure("errors"), r.out)
        }
    }

    func testTheDeploymentUnderARealSystemd() throws {
        guard getuid() == 0 else { throw XCTSkip("boots systemd in its own namespaces: needs root (CI runs as root)") }
        guard FileManager.default.isExecutableFile(atPath: "/lib/systemd/systemd") else {
            return XCTFail("systemd is not installed (scripts/install-deps.sh installs it)")
        }
        let repo = TestPaths.repositoryRoot.resolvingSymlinksInPath().path
        let binary = TestPaths.binary.resolvingSymlinksInPath().path
        guard binary.hasPrefix(repo + "/") else { return XCTFail("the binary \(binary) is not inside the repository \(repo)") }
        let binaryInside = "/mnt/repo/" + binary.dropFirst(repo.count + 1)

        let box = try Sandbox()
        defer { box.destroy() }
        try box.waitUntil("systemd to finish booting", timeout: 60) {
            let state = try box.run(["systemctl", "is-system-running"]).out.trimmingCharacters(in: .whitespacesAndNewlines)
            return state == "running" || state == "degraded"
        }

        // 1. Install, enable, readiness (Type=notify: each unit is active only after READY=1).
        let install = try box.run(["/bin/bash", "/mnt/repo/scripts/install.sh"], environment: ["BINARY": binaryInside])
        XCTAssertEqual(install.status, 0, install.out + install.err)
        let enable = try box.run(["systemctl", "enable", "--now", "mambaformer-router", "mambaformer-gateway", "mambaformer.target"])
        XCTAssertEqual(enable.status, 0, enable.err)
        for unit in ["mambaformer-router", "mambaformer-gateway"] {
            XCTAssertEqual(box.property(unit, "ActiveState"), "active", unit)
            XCTAssertEqual(box.property(unit, "Type"), "notify", unit)
        }

        // 2. Scale: the sandbox (syscall filter, MemoryDenyWriteExecute, ...) lets every node run.
        XCTAssertEqual(try box.run(["/usr/local/bin/mambaformer", "scale", "emamba", "3"]).status, 0)
        XCTAssertEqual(try box.run(["/usr/local/bin/mambaformer", "scale", "et5", "1"]).status, 0)
        try box.waitUntil("3 EMamba + 1 ET5 replicas in /readyz") { box.readyz().map { $0 == (3, 1) } ?? false }

        // A scale-down under load drains: no request fails.
        var drained: (sent: Int, ok: Int, errors: Int, output: String)?
        let loadDone = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            drained = try? box.load(["--concurrency", "4", "--duration", "8s", "--expert", "emamba"])
            loadDone.signal()
        }
        Thread.sleep(forTimeInterval: 2)
        XCTAssertEqual(try box.run(["/usr/local/bin/mambaformer", "scale", "emamba", "1"]).status, 0)
        loadDone.wait()
        XCTAssertGreaterThan(drained?.sent ?? 0, 0, drained?.output ?? "no load output")
        XCTAssertEqual(drained?.errors, 0, "scale-down under load: \(drained?.output ?? "")")
        print("systemd: scale emamba 3 → 1 under load: \(drained?.sent ?? 0) sent, \(drained?.errors ?? -1) errors")
        try box.waitUntil("1 EMamba replica") { box.readyz().map { $0 == (1, 1) } ?? false }

        // 3. SIGKILL of a replica: systemd restarts it (Restart=on-failure) and it rejoins.
        let victim = "mambaformer-expert@emamba-1.service"
        let killedAt = Date()
        XCTAssertEqual(try box.run(["systemctl", "kill", "-s", "KILL", victim]).status, 0)
        try box.waitUntil("the killed replica to restart and rejoin", timeout: 30) {
            box.property(victim, "NRestarts") == "1" && box.readyz().map { $0 == (1, 1) } ?? false
        }
        print("systemd: SIGKILLed replica back in its pool after \(String(format: "%.1f", Date().timeIntervalSince(killedAt))) s")

        // The router restarted (SIGTERM, then a new one) under load: answers it admitted finish,
        // requests while it is down get a retryable 503, and the cluster serves again.
        var during: (sent: Int, ok: Int, errors: Int, output: String)?
        let routerLoadDone = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            during = try? box.load(["--concurrency", "2", "--duration", "10s"])
            routerLoadDone.signal()
        }
        Thread.sleep(forTimeInterval: 3)
        let restartedAt = Date()
        XCTAssertEqual(try box.run(["systemctl", "restart", "mambaformer-router"]).status, 0)
        try box.waitUntil("the cluster to serve after the router restart", timeout: 30) { box.readyz() != nil }
        let recovered = Date().timeIntervalSince(restartedAt)
        routerLoadDone.wait()
        let output = during?.output ?? ""
        XCTAssertGreaterThan(during?.ok ?? 0, 0, output)
        // The only failures allowed are the retryable 503s while no router runs (class http_5xx):
        // no timeout, no connection error, no 4xx.
        let classes = output.split(separator: "\n").first { $0.hasPrefix("errors: ") }
            .map { $0.dropFirst("errors: ".count).split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).split(separator: " ")[0] } } ?? []
        XCTAssertTrue(classes.allSatisfy { $0 == "http_5xx" }, "router restart under load: \(output)")
        print("systemd: router restart under load: \(during?.sent ?? 0) sent, \(during?.errors ?? -1) errors "
              + "(retryable 503), serving again \(String(format: "%.1f", recovered)) s after `systemctl restart`")

        // 4. The journal holds no prompt or answer text.
        let canary = "zqxjvw-canary"
        let asked = try box.run(["curl", "-s", "--max-time", "30", "-X", "POST", "http://127.0.0.1:8080/v1/answer",
                                 "-H", "content-type: application/json",
                                 "--data", #"{"question": "Is \#(canary) contagious?", "max_tokens": 24}"#])
        let answer = ((try? JSONSerialization.jsonObject(with: Data(asked.out.utf8))) as? [String: Any])?["answer"] as? String ?? ""
        XCTAssertFalse(answer.isEmpty, asked.out)

        // 5. The autoscaler service, second-scale settings in a drop-in: EMamba 1-3, a target of
        // 2 spans per replica; open-loop load ramps past one replica's share and holds, then stops.
        let dropIn = """
            [Service]
            Environment=MAMBAFORMER_AUTOSCALE_UPSCALE_DELAY_S=1 MAMBAFORMER_AUTOSCALE_DOWNSCALE_DELAY_S=6 \
            MAMBAFORMER_AUTOSCALE_LOOK_BACK_S=3 MAMBAFORMER_AUTOSCALE_TARGET_ONGOING_SPANS=2 \
            MAMBAFORMER_AUTOSCALE_INTERVAL_MS=500 MAMBAFORMER_AUTOSCALE_MAX_REPLICAS_PER_HOST=5 \
            MAMBAFORMER_AUTOSCALE_EMAMBA_MAX_REPLICAS=3 MAMBAFORMER_AUTOSCALE_ET5_MAX_REPLICAS=1
            """
        XCTAssertEqual(try box.shell("mkdir -p /etc/systemd/system/mambaformer-autoscaler.service.d && cat > "
                                     + "/etc/systemd/system/mambaformer-autoscaler.service.d/test.conf <<'EOF'\n\(dropIn)\nEOF\n"
                                     + "systemctl daemon-reload").status, 0)
        XCTAssertEqual(try box.run(["systemctl", "enable", "--now", "mambaformer-autoscaler"]).status, 0)
        XCTAssertEqual(box.property("mambaformer-autoscaler", "ActiveState"), "active")
        // Its polkit rule: expert units only, start and stop only.
        let asScaler = ["setpriv", "--reuid", "mambaformer-autoscaler", "--regid", "mambaformer", "--clear-groups", "systemctl"]
        XCTAssertNotEqual(try box.run(asScaler + ["restart", "mambaformer-router"]).status, 0, "the autoscaler's user may not touch the router")
        XCTAssertNotEqual(try box.run(asScaler + ["enable", "mambaformer-expert@emamba-7"]).status, 0, "nor enable units")
        XCTAssertNotEqual(try box.run(asScaler + ["restart", "mambaformer-expert@et5-1"]).status, 0, "nor restart an expert")
        // ... and may start and stop an expert instance (what the rule is for).
        XCTAssertEqual(try box.run(asScaler + ["start", "mambaformer-expert@et5-9"]).status, 0, "the rule lets it start experts")
        XCTAssertEqual(try box.run(asScaler + ["stop", "mambaformer-expert@et5-9"]).status, 0, "and stop them")

        let started = Date()
        let timeline = ReplicaTimeline()
        let sampling = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            while !timeline.isStopped {
                if let r = box.readyz() { timeline.add(Date().timeIntervalSince(started), r.emamba) }
                Thread.sleep(forTimeInterval: 0.5)
            }
            sampling.signal()
        }
        Thread.sleep(forTimeInterval: 3)   // idle
        let ramp = try box.load(["--schedule", "step:20,60,100,100:4s", "--duration", "16s", "--max-inflight", "48",
                                 "--expert", "emamba", "--seed", "7"])
        let loadEnded = Date().timeIntervalSince(started)
        // A light load keeps running while the pool shrinks: the drains happen under load.
        let light = try box.load(["--concurrency", "1", "--duration", "16s", "--expert", "emamba"])
        try box.waitUntil("EMamba back to 1 replica after the downscale delays", timeout: 60) {
            timeline.samples.last?.replicas == 1 && timeline.samples.contains { $0.replicas > 1 }
        }
        timeline.stop()
        sampling.wait()
        let changes = timeline.changes
        print("systemd autoscaler timeline (s → EMamba replicas; idle 0–3 s, load 20→60→100 req/s "
              + "3–\(String(format: "%.0f", loadEnded)) s, then idle): "
              + changes.map { String(format: "%.1f→%d", $0.at, $0.replicas) }.joined(separator: " "))
        print("systemd autoscaler load: " + (ramp.output.split(separator: "\n").prefix(2).joined(separator: " | ")))
        XCTAssertGreaterThan(ramp.sent, 0, ramp.output)
        XCTAssertEqual(ramp.errors, 0, "every request succeeds: \(ramp.output)")
        XCTAssertGreaterThan(light.sent, 0, light.output)
        XCTAssertEqual(light.errors, 0, "no request fails while replicas drain: \(light.output)")
        print("systemd autoscaler light load through the scale-down: " + (light.output.split(separator: "\n").first.map(String.init) ?? ""))
        XCTAssertGreaterThanOrEqual(changes.map(\.replicas).max() ?? 0, 2, "replicas rose during the ramp")
        XCTAssertEqual(changes.last?.replicas, 1)
        // No flapping, from the decisions' journal times: no scale-down within downscale_delay_s
        // (6 s) of a scale-up. Each decision is logged with its reason.
        let journalLines = try box.run(["journalctl", "-u", "mambaformer-autoscaler", "-o", "short-unix", "--no-pager"]).out
            .split(separator: "\n").filter { $0.contains("] autoscale") && $0.contains(" from=") }
        let decisions: [(at: Double, from: Int, to: Int)] = journalLines.compactMap { line in
            let words = line.split(separator: " ")
            func value(_ key: String) -> Int? { words.first { $0.hasPrefix(key + "=") }.flatMap { Int($0.dropFirst(key.count + 1)) } }
            guard let at = words.first.flatMap({ Double($0) }), let from = value("from"), let to = value("to") else { return nil }
            return (at, from, to)
        }
        XCTAssertTrue(decisions.contains { $0.to > $0.from } && decisions.contains { $0.to < $0.from }, "\(journalLines)")
        for line in journalLines { XCTAssertTrue(line.contains("reason="), String(line)) }
        for down in decisions where down.to < down.from {
            if let up = decisions.last(where: { $0.to > $0.from && $0.at <= down.at }) {
                XCTAssertGreaterThanOrEqual(down.at - up.at, 6, "flapping: \(decisions)")
            }
        }

        // 6. Two routers through the template (mambaformer-router@1, @2): every expert serves
        // both, the gateway spreads over both; SIGKILL of one under load fails nothing, and
        // systemd brings it back (Restart=on-failure) to be rejoined.
        XCTAssertEqual(try box.run(["systemctl", "disable", "--now", "mambaformer-autoscaler", "mambaformer-router"]).status, 0)
        let twoRouters = try box.shell("""
            sed -i -e 's#^router = "ipc:///run/mambaformer/frontend"#router = ["ipc:///run/mambaformer/frontend-1", "ipc:///run/mambaformer/frontend-2"]#' \
                   -e 's#^router = "ipc:///run/mambaformer/backend"#router = ["ipc:///run/mambaformer/backend-1", "ipc:///run/mambaformer/backend-2"]#' \
                /etc/mambaformer/cluster.toml && \
            systemctl enable --now mambaformer-router@1 mambaformer-router@2 && \
            systemctl restart mambaformer-gateway 'mambaformer-expert@*'
            """)
        XCTAssertEqual(twoRouters.status, 0, twoRouters.out + twoRouters.err)
        func routersReachable() -> Int? {
            guard let r = try? box.run(["curl", "-s", "--max-time", "2", "http://127.0.0.1:8080/readyz"]),
                  let json = try? JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any],
                  let routers = json["routers"] as? [String: Int] else { return nil }
            return routers["reachable"]
        }
        try box.waitUntil("both routers reachable with replicas", timeout: 60) {
            routersReachable() == 2 && box.readyz().map { $0.emamba >= 1 && $0.et5 >= 1 } ?? false
        }
        var failover: (sent: Int, ok: Int, errors: Int, output: String)?
        let failoverDone = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            failover = try? box.load(["--concurrency", "4", "--duration", "8s"])
            failoverDone.signal()
        }
        Thread.sleep(forTimeInterval: 3)
        XCTAssertEqual(try box.run(["systemctl", "kill", "-s", "KILL", "mambaformer-router@1"]).status, 0)
        failoverDone.wait()
        XCTAssertGreaterThan(failover?.sent ?? 0, 0, failover?.output ?? "no load output")
        XCTAssertEqual(failover?.errors, 0, "one of two routers killed under load: \(failover?.output ?? "")")
        try box.waitUntil("the killed router restarted by systemd and rejoined", timeout: 30) {
            box.property("mambaformer-router@1.service", "NRestarts") == "1" && routersReachable() == 2
        }
        let moved = try box.run(["journalctl", "-u", "mambaformer-gateway", "-o", "cat", "--no-pager"]).out
            .components(separatedBy: "answer moved to another router").count - 1
        print("systemd: mambaformer-router@1 SIGKILLed under load (4 clients, 8 s): \(failover?.sent ?? 0) sent, "
              + "\(failover?.errors ?? -1) errors, \(moved) answers moved to router@2; router@1 restarted and rejoined")

        // 4 (continued). Nothing of the canary question or its answer in the whole journal.
        let journal = try box.run(["journalctl", "-o", "cat", "--no-pager"]).out
        XCTAssertGreaterThan(journal.count, 1000, "the journal was read")
        XCTAssertFalse(journal.contains(canary), "a prompt reached the journal")
        if answer.count >= 12 { XCTAssertFalse(journal.contains(answer), "an answer reached the journal: \(answer)") }
    }
}

struct SandboxError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
