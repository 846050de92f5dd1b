import ArgumentParser

struct LoadgenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loadgen",
        abstract: "Load-test a gateway (open or closed loop) and report latency and throughput."
    )

    func run() async throws {
        throw NotBuiltYet(command: "loadgen", issue: 11)
    }
}
