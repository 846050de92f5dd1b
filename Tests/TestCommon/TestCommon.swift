import Foundation

// What the test targets need alike: where the repository and this build's binary are, and
// running a command to completion.

public enum TestPaths {
    /// The repository's root (this file is Tests/TestCommon/TestCommon.swift).
    public static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }
    /// The build products folder: the test bundle runs from it, next to the `mambaformer` binary.
    public static var productsDirectory: URL { URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent() }
    /// The `mambaformer` binary of this build.
    public static var binary: URL { productsDirectory.appendingPathComponent("mambaformer") }
}

/// How a command ended and what it printed.
public struct CommandRun: Sendable {
    public var status: Int32
    public var out: String
    public var err: String
}

/// Runs `executable` to its end and captures both outputs. stderr is read on another thread
/// so that a command filling one pipe while the test waits on the other cannot deadlock.
public func runCommand(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> CommandRun {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let errData = ErrorCapture()
    let reader = Thread { errData.data = err.fileHandleForReading.readDataToEndOfFile(); errData.done.signal() }
    reader.start()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    errData.done.wait()
    process.waitUntilExit()
    return CommandRun(status: process.terminationStatus, out: String(decoding: outData, as: UTF8.self),
                      err: String(decoding: errData.data, as: UTF8.self))
}

private final class ErrorCapture: @unchecked Sendable {
    var data = Data()
    let done = DispatchSemaphore(value: 0)
}

/// A pool's replica count over time, sampled by a background thread or task while a test
/// drives load (the autoscaling tests' timelines).
public final class ReplicaTimeline: @unchecked Sendable {   // guarded by `lock`
    private let lock = NSLock()
    private var values: [(at: Double, replicas: Int)] = []
    private var stopped = false
    public init() {}
    public func add(_ at: Double, _ replicas: Int) { lock.withLock { values.append((at, replicas)) } }
    public var samples: [(at: Double, replicas: Int)] { lock.withLock { values } }
    /// The first sample and each one that differs from the one before.
    public var changes: [(at: Double, replicas: Int)] {
        var out: [(at: Double, replicas: Int)] = []
        for s in samples where out.last?.replicas != s.replicas { out.append(s) }
        return out
    }
    /// Tells a sampling thread to end.
    public func stop() { lock.withLock { stopped = true } }
    public var isStopped: Bool { lock.withLock { stopped } }
}
