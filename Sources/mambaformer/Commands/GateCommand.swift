import ArgumentParser

struct GateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gate",
        abstract: "Train and inspect the token-level routing gate.",
        subcommands: [GateTrainCommand.self]
    )
}

struct GateTrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train the gate with the utility-guided multi-objective loss."
    )

    func run() async throws {
        throw NotBuiltYet(command: "gate train", issue: 8)
    }
}
