import ArgumentParser

struct InferCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "infer",
        abstract: "Run one Hugging Face checkpoint in-process (forward pass, logits, greedy ids)."
    )

    func run() async throws {
        throw NotBuiltYet(command: "infer", issue: 3)
    }
}
