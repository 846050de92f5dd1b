import Foundation
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
}
