import ArgumentParser

struct KeygenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Write a CURVE key pair (Z85) for a router, gateway or expert."
    )

    func run() async throws {
        throw NotBuiltYet(command: "keygen", issue: 5)
    }
}
