import Foundation
import TestCommon
import XCTest

/// Compatibility proven with the official client: the `openai` Python package (pinned,
/// installed by scripts/test.sh) against a live cluster — plain and streaming chat, usage in
/// streams, `stop`, `logprobs`, seeded sampling, error objects for bad input and 429
/// (tools/compat/openai_client_check.py).
final class OpenAIClientTests: XCTestCase {
    func testTheOfficialOpenAIClientWorksUnchanged() throws {
        let probe = try runCommand("/usr/bin/env", ["python3", "-c", "import openai"])
        guard probe.status == 0 else {
            return XCTFail("the openai package is missing: make test installs it (scripts/test.sh)\n\(probe.err)")
        }
        let harness = try ClusterHarness()
        defer { harness.stopAll() }
        // The `python3` of PATH, the one scripts/test.sh installed the package for.
        // One answer at a time: the 429 check holds one open.
        let port = try harness.startSmallCluster(gatewayArguments: ["--max-concurrent", "1", "--max-tokens", "512"])
        let script = TestPaths.repositoryRoot.appendingPathComponent("tools/compat/openai_client_check.py").path
        let run = try runCommand("/usr/bin/env", ["python3", script, "--base-url", "http://127.0.0.1:\(port)/v1"])
        XCTAssertEqual(run.status, 0, run.out + run.err + "\n" + harness.log("gateway").suffix(3000))
        print(run.out.split(separator: "\n").last.map(String.init) ?? "")
    }
}
