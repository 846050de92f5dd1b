import Foundation
@testable import Gateway
import GatewayClient
import Hummingbird
import HummingbirdTesting
import TestCommon
import Wire
import XCTest

/// Real command-line clients against a live gateway (fake router behind it):
/// curl speaking OpenAI chat completions (plain and streaming), and `mambaformer ask`.
final class CommandLineClientTests: XCTestCase {
    private func run(_ executable: String, _ arguments: [String]) throws -> CommandRun {
        try runCommand(executable, arguments)
    }

    private func which(_ name: String) -> String? {
        for dir in ["/usr/bin", "/usr/local/bin", "/bin"] where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
            return "\(dir)/\(name)"
        }
        return nil
    }

    func testCurlSpeaksOpenAIChatCompletions() async throws {
        // scripts/install-deps.sh installs curl: its absence is a broken set-up, not a skip.
        guard let curl = which("curl") else { return XCTFail("curl not installed (scripts/install-deps.sh installs it)") }
        let backend = FakeBackend.simple(delayMs: 10)
        try await TestSupport.app(backend).test(.live) { client in
            let url = "http://127.0.0.1:\(client.port!)/v1/chat/completions"
            let body = #"{"model": "mambaformer", "messages": [{"role": "user", "content": "Is aspirin an NSAID?"}]"#
            let plain = try self.run(curl, ["-sS", "-H", "Content-Type: application/json", "-d", body + "}", url])
            XCTAssertEqual(plain.status, 0, plain.err)
            let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(plain.out.utf8)) as? [String: Any])
            let message = ((object["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])
            XCTAssertEqual(message?["content"] as? String, "The answer is 42.")

            let streamed = try self.run(curl, ["-sSN", "-H", "Content-Type: application/json",
                                               "-d", body + #", "stream": true}"#, url])
            XCTAssertEqual(streamed.status, 0, streamed.err)
            let lines = streamed.out.split(separator: "\n").filter { $0.hasPrefix("data: ") }
            XCTAssertEqual(lines.last, "data: [DONE]")
            let content = lines.dropLast().compactMap { line -> String? in
                let json = try? JSONSerialization.jsonObject(with: Data(line.dropFirst(6).utf8)) as? [String: Any]
                let delta = (json?["choices"] as? [[String: Any]])?.first?["delta"] as? [String: Any]
                return delta?["content"] as? String
            }
            XCTAssertEqual(content.joined(), "The answer is 42.")
        }
    }

    func testAskCommandPrintsTheAnswerAndRouting() async throws {
        // The binary of this very build sits next to the test bundle (`--build-tests` builds it).
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("mambaformer").path
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: binary), "\(binary) is missing: build with --build-tests")
        let backend = FakeBackend.simple()
        try await TestSupport.app(backend).test(.live) { client in
            let url = "http://127.0.0.1:\(client.port!)"
            let plain = try self.run(binary, ["ask", "What is it?", "--url", url, "--context", "ctx", "--max-tokens", "16"])
            XCTAssertEqual(plain.status, 0, plain.err)
            XCTAssertEqual(plain.out, "The answer is 42.\n")
            XCTAssertTrue(plain.err.contains("eos · 3 spans · emamba 4 tok (57%) · et5 3 tok (43%) · 2 switches"), plain.err)

            let streamed = try self.run(binary, ["ask", "What is it?", "--url", url, "--stream"])
            XCTAssertEqual(streamed.status, 0, streamed.err)
            XCTAssertEqual(streamed.out, "The answer is 42.\n")

            let json = try self.run(binary, ["ask", "What is it?", "--url", url, "--json"])
            let answer = try JSONDecoder().decode(AnswerResponse.self, from: Data(json.out.utf8))
            XCTAssertEqual(answer.trace.count, 3)

            let bad = try self.run(binary, ["ask", " ", "--url", url])
            XCTAssertNotEqual(bad.status, 0)
            XCTAssertTrue(bad.err.contains("empty_question"), bad.err)
        }
        XCTAssertEqual(backend.submitted.first?.context, "ctx")
        XCTAssertEqual(backend.submitted.first?.maxNewTokens, 16)
    }
}
