import ArgumentParser
import Foundation
import Gateway
import Wire

/// The one executable. Each subcommand lives in `Commands/<Name>Command.swift`.
@main
struct Mambaformer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mambaformer",
        abstract: "A multi-process serving cluster for the MambaFormer hybrid Mixture-of-Experts.",
        version: "mambaformer \(MambaformerVersion.string) (libzmq \(zmqLibraryVersion()))",
        subcommands: [
            GatewayCommand.self, RouterCommand.self, ExpertCommand.self, UpCommand.self,
            AskCommand.self, InferCommand.self, TokenizeCommand.self, GateCommand.self,
            EvalCommand.self, LoadgenCommand.self, KeygenCommand.self, ScaleCommand.self,
            AutoscaleCommand.self, AuditCommand.self,
        ]
    )

    static func main() async {
        // The gateway's tasks run on its event loops (see `EventLoopExecutor`). That has to
        // happen before any task starts, i.e. before parsing, hence the look at argv and an
        // environment variable (the way back to Concurrency's own pool) instead of an option.
        if CommandLine.arguments.dropFirst().first == GatewayCommand.configuration.commandName,
           ProcessInfo.processInfo.environment[EventLoopExecutor.optOutVariable] != "concurrency-pool" {
            EventLoopExecutor.adopt()
        }
        await main(nil)
    }
}

enum MambaformerVersion {
    static let string = "0.1.0"
}
