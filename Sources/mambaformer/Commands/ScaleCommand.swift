import ArgumentParser
import ClusterConfig

struct ScaleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scale",
        abstract: "Start or stop expert replicas through systemd to reach a count.",
        discussion: """
            Counts the running mambaformer-expert@POOL-N instances on this host (or --host) and \
            enables+starts the lowest free numbers, or disables+stops the highest ones first. \
            Each host runs its own replicas: run it once per host (e.g. --host root@expert-2).
            """
    )

    @Argument(help: "Pool: emamba or et5.") var pool: String
    @Argument(help: "Replicas of that pool wanted on the host.") var count: Int
    @Flag(help: "Print the systemctl commands instead of running them.") var dryRun = false
    @Option(help: "Scale another host through `systemctl -H USER@HOST` (ssh).") var host: String?

    func run() throws {
        let scaler = Scaler(runner: ProcessSystemctl(), host: host)
        let plan = try scaler.plan(pool: pool, target: count)
        let lines = scaler.commandLines(plan)
        let summary = "\(pool): \(plan.running.count) running → \(count)"
        if lines.isEmpty {
            print("\(summary): nothing to do")
            return
        }
        if dryRun {
            print("\(summary) (dry run)")
            for line in lines { print(line) }
            return
        }
        // `systemctl enable --now` returns once each unit reported READY (Type=notify): the
        // replicas have loaded their model when this prints.
        try scaler.apply(plan)
        var done: [String] = []
        if !plan.toStart.isEmpty { done.append("started " + plan.toStart.joined(separator: " ")) }
        if !plan.toStop.isEmpty { done.append("stopped " + plan.toStop.joined(separator: " ")) }
        print("\(summary): " + done.joined(separator: ", "))
    }
}
