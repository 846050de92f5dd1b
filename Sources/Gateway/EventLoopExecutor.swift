import NIOCore
import NIOPosix

/// Swift Concurrency's tasks on the gateway's own event-loop threads.
///
/// Hummingbird reads and writes HTTP on NIO's event loops, while the handlers run as Swift
/// tasks on Concurrency's global pool: every request crossed between the two pools several
/// times (request in, each span result from the router thread, response out), and on a
/// 2-core machine each crossing is a thread wake-up that the experts' compute competes with.
/// Installing NIO's singleton event-loop group (the one Hummingbird serves on) as the global
/// executor removes those crossings. Nothing in the gateway blocks inside a task (the ZeroMQ
/// socket has its own thread), which is what this requires.
public enum EventLoopExecutor {
    /// `MAMBAFORMER_TASK_EXECUTOR=concurrency-pool` keeps Concurrency's default pool (read from
    /// the environment only: the choice is made before options and the configuration are read).
    public static let optOutVariable = "MAMBAFORMER_TASK_EXECUTOR"

    /// Must run on the main thread before the first task is started; once per process.
    /// Returns false where NIO cannot install it (the default pool is then used).
    @discardableResult
    public static func adopt() -> Bool {
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
    }
}
