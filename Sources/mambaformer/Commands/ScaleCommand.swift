import ArgumentParser

struct ScaleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scale",
        abstract: "Start or stop expert replicas through systemd to reach a count."
    )

    func run() async throws {
        throw NotBuiltYet(command: "scale", issue: 10)
    }
}
