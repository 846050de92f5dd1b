import ArgumentParser

struct RouterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "router",
        abstract: "Run the router (the gate and the span broker)."
    )

    func run() async throws {
        throw NotBuiltYet(command: "router", issue: 6)
    }
}
