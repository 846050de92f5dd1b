import ArgumentParser

struct ExpertCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "expert",
        abstract: "Run one expert replica (EMamba or ET5) connected to a router."
    )

    func run() async throws {
        throw NotBuiltYet(command: "expert", issue: 6)
    }
}
