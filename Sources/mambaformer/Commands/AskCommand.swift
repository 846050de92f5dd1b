import ArgumentParser
import Foundation
import Gateway
import GatewayClient

/// `mambaformer ask "question"`: one request to a running gateway, printing the answer and a
/// one-line routing summary (to stderr, so the answer alone can be piped).
struct AskCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ask",
        abstract: "Ask a running gateway a question and print the answer and its routing."
    )

    @Argument(help: "The question.")
    var question: String

    @Option(help: "Context for the question (e.g. an abstract); @FILE reads it from a file.")
    var context: String?

    @Option(help: "Gateway base URL.")
    var url: String = "http://127.0.0.1:8080"

    @Flag(help: "Print spans as they arrive (server-sent events).")
    var stream = false

    @Flag(help: "Print the gateway's full JSON response instead of text.")
    var json = false

    @Option(name: .customLong("max-tokens"), help: "Maximum answer tokens.")
    var maxTokens: Int?

    @Option(name: .customLong("cost-weight"), help: "0 favours quality (ET5), 1 favours cost (EMamba).")
    var costWeight: Double?

    @Option(help: "Force one expert: emamba, et5 or auto.")
    var expert: String?

    @Option(help: "Sampling temperature (0 = greedy).")
    var temperature: Double?

    @Option(help: "Sampling seed.")
    var seed: UInt64?

    @Option(name: .customLong("deadline-ms"), help: "Deadline for the answer, in milliseconds.")
    var deadlineMs: Int?

    @Option(name: .customLong("token-file"), help: "File holding a bearer token (default: $MAMBAFORMER_TOKEN).")
    var tokenFile: String?

    func validate() throws {
        guard let base = URL(string: url), let scheme = base.scheme, ["http", "https"].contains(scheme), base.host != nil else {
            throw ValidationError("--url must be an http(s) URL such as http://127.0.0.1:8080, got \(url)")
        }
        if let expert, !["emamba", "et5", "auto"].contains(expert) {
            throw ValidationError("--expert must be emamba, et5 or auto, got \(expert)")
        }
    }

    func run() async throws {
        let token = try readToken()
        let client = GatewayClient(baseURL: URL(string: url)!, token: token)
        let query = GatewayClient.Query(question: question, context: try readContext(), maxTokens: maxTokens,
                                        costWeight: costWeight, expert: expert, temperature: temperature,
                                        seed: seed, deadlineMs: deadlineMs)
        let answer: AnswerResponse
        do {
            if stream && !json {
                answer = try await client.streamAnswer(query) { span in
                    FileHandle.standardOutput.write(Data(span.text.utf8))
                }
                print()
            } else {
                answer = try await client.answer(query)
            }
        } catch let error as GatewayClient.ClientError {
            throw AskFailure(message: error.description)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(answer), as: UTF8.self))
            return
        }
        if !stream { print(answer.answer) }
        FileHandle.standardError.write(Data("[\(answer.id)] \(answer.routingSummary)\n".utf8))
    }

    private func readContext() throws -> String? {
        guard let context, context.hasPrefix("@") else { return context }
        let path = String(context.dropFirst())
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw AskFailure(message: "cannot read the context file \(path) (missing, unreadable or not UTF-8)")
        }
        return text
    }

    private func readToken() throws -> String? {
        if let tokenFile {
            guard let data = FileManager.default.contents(atPath: tokenFile),
                  let line = String(data: data, encoding: .utf8)?.split(whereSeparator: \.isNewline)
                      .map({ $0.trimmingCharacters(in: .whitespaces) }).first(where: { !$0.isEmpty && !$0.hasPrefix("#") })
            else { throw AskFailure(message: "no token in \(tokenFile)") }
            return line
        }
        return ProcessInfo.processInfo.environment["MAMBAFORMER_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
    }
}

struct AskFailure: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
