import ArgumentParser
import Audit
import Foundation

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Check the gateway's audit trail.",
        subcommands: [AuditVerifyCommand.self]
    )
}

struct AuditVerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check an audit log's HMAC chain: report the first altered, removed or reordered line.",
        discussion: """
            Give every file of the trail, oldest first: rotated files (PATH.<sequence number>) \
            and then the current one, e.g. `mambaformer audit verify --key-file KEY /var/log/mambaformer/audit.log.* \
            /var/log/mambaformer/audit.log` (the shell sorts the rotated names oldest first). \
            Cutting lines off the end leaves a valid chain: pass the last head the gateway wrote to its log \
            (`audit chain head` with audit_seq and audit_mac, e.g. from journalctl) as --head SEQ:MAC to detect it.
            Exit status: 0 intact, 1 a problem found (printed with its file and line).
            """
    )

    @Option(help: "The audit key file (audit.hmac_key_file).")
    var keyFile: String

    @Flag(help: "Accept a chain that starts after sequence number 0 (older files removed by retention).")
    var partial = false

    @Option(name: .customLong("head"), help: "A chain head from the gateway's log, SEQ:MAC; must be in the files (repeatable).")
    var heads: [String] = []

    @Argument(help: "The log files, oldest first.")
    var paths: [String]

    func run() async throws {
        var verifier = AuditVerifier(key: try AuditKey.load(path: keyFile))
        verifier.partial = partial
        for head in heads {
            let parts = head.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, let seq = UInt64(parts[0]), parts[1].count == 64 else {
                throw ValidationError("--head takes SEQ:MAC (the audit_seq and audit_mac of an `audit chain head` log line), got \(head)")
            }
            verifier.heads[seq] = String(parts[1])
        }
        switch try verifier.verify(paths: paths) {
        case .success(let summary):
            let range = summary.firstSeq.map { "sequence numbers \($0)...\(summary.lastSeq ?? $0)" } ?? "no lines"
            print("audit trail intact: \(summary.lines) lines in \(paths.count) file(s), \(range)")
            if let mac = summary.lastMac, let seq = summary.lastSeq { print("head: \(seq):\(mac)") }
            if heads.isEmpty {
                print("note: without --head, lines cut off the end cannot be detected; pass the last "
                      + "`audit chain head` from the gateway's log (journalctl -u mambaformer-gateway | grep 'audit chain head')")
            }
        case .failure(let finding):
            print("audit trail NOT intact: \(finding)")
            throw ExitCode(1)
        }
    }
}
