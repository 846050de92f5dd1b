import ArgumentParser

struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Run the HTTP gateway in front of a router."
    )

    func run() async throws {
        throw NotBuiltYet(command: "gateway", issue: 7)
    }
}
