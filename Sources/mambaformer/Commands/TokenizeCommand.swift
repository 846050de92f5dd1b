import ArgumentParser

struct TokenizeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Encode or decode text with a Hugging Face tokenizer.json."
    )

    func run() async throws {
        throw NotBuiltYet(command: "tokenize", issue: 4)
    }
}
