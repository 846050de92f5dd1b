import Foundation
import GatewayClient
import HTTPTypes
import HummingbirdCore
import NIOCore
import NIOHTTP1
import NIOHTTPTypes

/// Answers what the HTTP/1.1 decoder refuses — a bogus request line, broken framing, headers
/// over the limits — in the gateway's usual JSON error shape, and with the precise status:
/// `431` for headers too large or too many, `400` otherwise. Then closes the connection, since
/// the byte stream can no longer be trusted to contain request boundaries.
///
/// Hummingbird itself would answer every decoder error with an empty `400`; that reply, written
/// after ours, is dropped here. Sits after the HTTP decoder (`additionalChannelHandlers`).
final class MalformedRequestReply: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    struct Replied: Error {}

    /// Shown in the 431 message, so a client knows what it has to stay under.
    let limits: HTTP1Channel.Configuration.DecoderConfiguration
    let metrics: GatewayMetrics
    private var responseOpen = false
    private var replied = false

    init(limits: HTTP1Channel.Configuration.DecoderConfiguration, metrics: GatewayMetrics) {
        self.limits = limits
        self.metrics = metrics
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // Forward first: a handler reading the body must fail with this error before the close
        // below could end its stream cleanly.
        context.fireErrorCaught(error)
        if let parseError = error as? HTTPParserError, !replied, !responseOpen, context.channel.isActive {
            replied = true
            reply(context, Self.gatewayError(parseError, limits: limits))
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !replied else { return }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard !replied else {
            promise?.fail(Replied())
            return
        }
        switch unwrapOutboundIn(data) {
        case .head: responseOpen = true
        case .body: break
        case .end: responseOpen = false
        }
        context.write(data, promise: promise)
    }

    private func reply(_ context: ChannelHandlerContext, _ error: GatewayError) {
        metrics.malformedRequest(status: Int(error.status.code))
        let requestId = UUID().uuidString.lowercased()
        let body = ByteBuffer(string: JSON.encode(ErrorEnvelope(error, requestId: requestId)) + "\n")
        let head = HTTPResponse(status: error.status, headerFields: [
            .contentType: "application/json", .contentLength: String(body.readableBytes),
            .connection: "close", .requestId: requestId,
        ])
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(body)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    static func gatewayError(_ error: HTTPParserError,
                             limits: HTTP1Channel.Configuration.DecoderConfiguration) -> GatewayError {
        if error == .headerOverflow {
            return GatewayError(.requestHeaderFieldsTooLarge, "headers_too_large",
                                "request headers exceed the limits: \(limits.maxHeaderFieldCount) fields, "
                                    + "\(limits.maxHeaderFieldSize) bytes per field, \(limits.maxHeaderListSize) bytes in all")
        }
        return GatewayError(.badRequest, "malformed_request", "not a valid HTTP/1.1 request (\(error))")
    }
}
