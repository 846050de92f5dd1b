import ClusterConfig
import Foundation
import HummingbirdCore
import Logging
import NIOCore
import NIOSSL

/// TLS at the gateway (`gateway.tls_cert`, `gateway.tls_key`), optionally verifying client
/// certificates against `gateway.tls_client_ca` (required with `gateway.tls_require_client_cert`,
/// else checked when one is presented). The context is held here and swapped whole on SIGHUP:
/// new connections get the new certificate, CA and setting; connections open keep theirs; a
/// reload that fails keeps the old context.
///
/// HummingbirdTLS's `TLSChannel` fixes its context at start, so the child channel below adds
/// the `NIOSSLServerHandler` itself, from whatever context is current when a connection comes.
public final class GatewayTLS: @unchecked Sendable {
    // Sendable: `context` is read and replaced under `lock` (NIOSSLContext itself is thread-safe).
    private let lock = NSLock()
    private var context: NIOSSLContext

    public init(_ config: GatewayConfig) throws {
        context = try Self.makeContext(config)
    }

    var current: NIOSSLContext { lock.withLock { context } }

    /// Builds the new context from the files (off the event loop); throws, changing nothing, if
    /// any is missing, unreadable, too open, or does not match.
    public func reload(_ config: GatewayConfig) throws {
        let fresh = try Self.makeContext(config)
        lock.withLock { context = fresh }
    }

    static func makeContext(_ config: GatewayConfig) throws -> NIOSSLContext {
        guard let certPath = config.tlsCert, let keyPath = config.tlsKey else {
            throw GatewayConfigError.invalidValue(field: "tlsCert", reason: "TLS needs both gateway.tls_cert and gateway.tls_key")
        }
        let chain: [NIOSSLCertificate]
        do { chain = try NIOSSLCertificate.fromPEMFile(certPath) } catch {
            throw GatewayConfigError.tlsFile(setting: "gateway.tls_cert", path: certPath, reason: "not a readable PEM certificate chain (\(error))")
        }
        if chain.isEmpty { throw GatewayConfigError.tlsFile(setting: "gateway.tls_cert", path: certPath, reason: "holds no certificate") }
        if let mode = (try? FileManager.default.attributesOfItem(atPath: keyPath))?[.posixPermissions] as? Int, mode & 0o077 != 0 {
            throw GatewayConfigError.tlsFile(setting: "gateway.tls_key", path: keyPath,
                                             reason: "may be read by others (mode \(String(mode, radix: 8))): chmod 600 it")
        }
        let key: NIOSSLPrivateKey
        do { key = try NIOSSLPrivateKey(file: keyPath, format: .pem) } catch {
            throw GatewayConfigError.tlsFile(setting: "gateway.tls_key", path: keyPath, reason: "not a readable PEM private key (\(error))")
        }
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        tls.minimumTLSVersion = .tlsv12
        if let caPath = config.tlsClientCA {
            let roots: [NIOSSLCertificate]
            do { roots = try NIOSSLCertificate.fromPEMFile(caPath) } catch {
                throw GatewayConfigError.tlsFile(setting: "gateway.tls_client_ca", path: caPath, reason: "not a readable PEM certificate (\(error))")
            }
            if roots.isEmpty { throw GatewayConfigError.tlsFile(setting: "gateway.tls_client_ca", path: caPath, reason: "holds no certificate") }
            tls.trustRoots = .certificates(roots)
            tls.sendCANameList = true
            // Required: no certificate, no handshake. Optional: a certificate presented must verify.
            tls.certificateVerification = config.tlsRequireClientCert ? .noHostnameVerification : .optionalVerification
        }
        do { return try NIOSSLContext(configuration: tls) } catch {
            throw GatewayConfigError.tlsFile(setting: "gateway.tls_key", path: keyPath,
                                             reason: "does not go with the certificate in \(certPath), or the files are unusable (\(error))")
        }
    }

    /// HTTP/1.1 inside TLS, with the context current when each connection is accepted.
    func serverBuilder(_ http1: HTTP1Channel.Configuration) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in
            ReloadableTLSChannel(base: HTTP1Channel(responder: responder, configuration: http1), tls: self)
        }
    }

    enum PeerName: Equatable { case none, valid(String), invalid(String) }

    /// The subject common name of the client's verified certificate: `none` when no certificate
    /// was presented (or no TLS); `invalid` when it is not a client name (1-64 of
    /// `[A-Za-z0-9._-]`, the token file's alphabet), which is refused rather than used.
    static func peerCommonName(_ channel: any Channel) async -> PeerName {
        guard let certificate = try? await channel.nioSSL_peerCertificate().get() else { return .none }
        let name = certificate.subjectName.last(where: { $0.type == .commonName })?.value ?? ""
        return ClientLimits.isValidName(name) ? .valid(name) : .invalid(name)
    }
}

struct ReloadableTLSChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value
    let base: Base
    let tls: GatewayTLS

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let context = tls.current
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
        }.flatMap {
            self.base.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}
