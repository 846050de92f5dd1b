import ArgumentParser

struct UpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Start a whole local cluster (router, gateway, experts) in one command."
    )

    func run() async throws {
        throw NotBuiltYet(command: "up", issue: 6)
    }
}
