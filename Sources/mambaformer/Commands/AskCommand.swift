import ArgumentParser

struct AskCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ask",
        abstract: "Ask a running gateway a question and print the answer and its routing."
    )

    func run() async throws {
        throw NotBuiltYet(command: "ask", issue: 7)
    }
}
