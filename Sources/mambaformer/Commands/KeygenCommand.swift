import ArgumentParser
import Wire

struct KeygenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Write a CURVE key pair (Z85) for a router, gateway or expert.",
        discussion: """
            Writes <name>.key (the secret key, mode 0600: keep it on its host) and <name>.pub \
            (the public key: give it to the router's allow-list, or to clients as the server key).
            """
    )

    @Argument(help: "Base name of the key files, e.g. router, gateway, expert-emamba-1.")
    var name: String

    @Option(help: "Directory to write the files into.")
    var dir: String = "."

    @Flag(help: "Overwrite existing key files.")
    var force = false

    func run() async throws {
        let files = try Keys.writeKeyPair(name: name, directory: dir, overwrite: force)
        print("secret key: \(files.secretKeyPath) (mode 0600)")
        print("public key: \(files.publicKeyPath)")
        print(files.publicKey)
    }
}
