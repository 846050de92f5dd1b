import CSupport
import Foundation
import Logging

/// Process set-up shared by the node subcommands.
enum Runtime {
    /// swift-log to stderr (journald picks it up under systemd). Prompts and answers are
    /// patient data: nodes log them only at trace level.
    static func bootstrapLogging(_ level: String?, label: String) -> Logger {
        let wanted = level ?? ProcessInfo.processInfo.environment["MAMBAFORMER_LOG_LEVEL"] ?? "info"
        let parsed = Logger.Level(rawValue: wanted.lowercased()) ?? .info
        LoggingSystem.bootstrap { name in
            var handler = StreamLogHandler.standardError(label: name)
            handler.logLevel = parsed
            return handler
        }
        return Logger(label: label)
    }

    /// Under `mambaformer up` (and the tests) a child must not outlive its launcher: it
    /// gets SIGTERM, and drains, within 200 ms of the parent's death (and exits at once
    /// when the parent is already gone); one still busy 15 s later (a long prefill) is killed.
    static func dieWithParentIfSupervised() {
        guard let text = ProcessInfo.processInfo.environment["MAMBAFORMER_PARENT_PID"], let parent = Int32(text) else { return }
        if getppid() != parent { exit(0) }
        _ = mf_watch_parent(parent, SIGTERM)
    }

    /// OpenBLAS 0.3.21 treats Zen 4/5 as Haswell; its AVX-512 (SkylakeX) kernels are ~2x
    /// faster for large GEMMs. The variable is read when the library loads, before `main`,
    /// so it must be in the environment at exec time: re-exec once with it set. Opt out with
    /// OPENBLAS_CORETYPE set to anything (it is then left alone).
    static func ensureOpenBLASCoreType() {
        let env = ProcessInfo.processInfo.environment
        guard env["OPENBLAS_CORETYPE"] == nil, mf_cpu_has_avx512f() == 1 else { return }
        setenv("OPENBLAS_CORETYPE", "SkylakeX", 1)
        let args = CommandLine.arguments
        var cArgs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) }
        cArgs.append(nil)
        execv("/proc/self/exe", &cArgs)
        // execv returned: carry on with the detected core type.
    }
}
