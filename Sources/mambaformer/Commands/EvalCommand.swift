import ArgumentParser

struct EvalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate routing policies and baselines on a dataset; draw the Pareto frontier."
    )

    func run() async throws {
        throw NotBuiltYet(command: "eval", issue: 8)
    }
}
