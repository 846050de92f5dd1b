import Foundation
import GatewayClient
import HTTPTypes
import NIOCore
import NIOHTTPTypes
import NIOSSL

/// Slowloris protection, like nginx's `client_header_timeout` + `client_body_timeout`: a
/// connection must deliver a complete request (head and body) within `timeout` of connecting or
/// of the previous response ending. Otherwise:
/// - some of a request arrived and no response has started → `408` (JSON error body,
///   `Connection: close`), then close;
/// - nothing arrived (an idle keep-alive connection) → close silently: this is the keep-alive
///   idle timeout, and a 408 there would race the client's next request;
/// - a response already started (e.g. an early 413 while the body keeps trickling) → close.
///
/// Without it, a client that sends one header byte every few seconds holds a connection (and,
/// once the head is in, a request handler waiting on the body) forever.
///
/// A response that says `Connection: close` (every answer's, and errors that close) closes the
/// connection once its last byte is written. Hummingbird closes only when the *request* said
/// so; without this, a client that pipelines a second request behind an answer holds the
/// connection open forever (the answer's hang-up watcher swallowed that request's head), and
/// a gateway with such connections never finishes shutting down.
///
/// The clock stops once a request has been read completely: generating and streaming an answer
/// (SSE, minutes long) is the server's time, not the client's. Sits after the HTTP decoder
/// (Hummingbird's `additionalChannelHandlers`); it adds a tiny byte observer at the head of
/// the pipeline, because a head dribbled byte by byte produces no HTTP part until it is whole.
final class RequestReadTimeout: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// Thrown to whoever is still reading the request (e.g. a handler waiting on the body), so a
    /// cut-off body is never mistaken for a complete one.
    struct Expired: Error, CustomStringConvertible {
        let timeout: TimeAmount
        var description: String { "request not received within \(timeout.nanoseconds / 1_000_000) ms" }
    }

    private let timeout: TimeAmount
    private let metrics: GatewayMetrics
    private let input = InputObserver()
    /// Counts, so pipelined requests and early responses (413 before the body is read) are right.
    private var headsRead = 0
    private var requestsRead = 0
    private var responsesEnded = 0
    private var responseOpen = false
    private var timer: Scheduled<Void>?
    /// The `X-Request-Id` of the request being read, echoed in a 408 when well-formed.
    private var clientRequestId: String?
    /// Set once the timeout fired: from then on nothing is read or written but our own reply.
    private var expired = false
    /// The response being written said `Connection: close`.
    private var closeAfterResponse = false

    init(timeout: TimeAmount, metrics: GatewayMetrics) {
        self.timeout = timeout
        self.metrics = metrics
    }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        // Behind TLS the observer goes after the TLS handler: handshake records are not a request.
        if let tls = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self) {
            try? context.pipeline.syncOperations.addHandler(input, position: .after(tls))
        } else {
            try? context.pipeline.syncOperations.addHandler(input, position: .first)
        }
        if context.channel.isActive { startWaiting(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimer()
    }

    func channelActive(context: ChannelHandlerContext) {
        if timer == nil { startWaiting(context) }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelTimer()
        context.fireChannelInactive()
    }

    // MARK: Traffic

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !expired else { return }
        switch unwrapInboundIn(data) {
        case .head(let head):
            headsRead += 1
            clientRequestId = head.headerFields[.requestId]
        case .body:
            break
        case .end:
            requestsRead += 1
            if requestsRead > responsesEnded {
                cancelTimer()            // complete: the rest is the server's time
            } else {
                startWaiting(context)    // it was answered early: now idle, waiting for the next one
            }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard !expired else {
            promise?.fail(Expired(timeout: timeout))
            return
        }
        switch unwrapOutboundIn(data) {
        case .head(let head):
            responseOpen = true
            closeAfterResponse = head.headerFields[.connection]?.lowercased().contains("close") ?? false
        case .body:
            break
        case .end:
            responseOpen = false
            responsesEnded += 1
            if closeAfterResponse {
                let written = promise ?? context.eventLoop.makePromise()
                written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
                context.write(data, promise: written)
                return
            }
            // Every request read is answered: the clock for the next one starts now. (Fewer
            // requests read than answered: the current one is still arriving, its clock runs on.)
            if requestsRead == responsesEnded { startWaiting(context) }
        }
        context.write(data, promise: promise)
    }

    // MARK: The clock

    private func startWaiting(_ context: ChannelHandlerContext) {
        cancelTimer()
        input.seen = false
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
            timer = nil
            expire(context)
        }
    }

    private func cancelTimer() {
        timer?.cancel()
        timer = nil
    }

    private func expire(_ context: ChannelHandlerContext) {
        guard context.channel.isActive, !expired else { return }
        let partial = input.seen || headsRead > requestsRead
        // 408 only if the request being read has no response yet (none open, none sent early).
        let answer = partial && !responseOpen && requestsRead >= responsesEnded
        metrics.readTimeout(answered: answer)
        // The error first: closing makes the decoder report a cut-off request, and whoever reads
        // the body must see this error rather than that one (or a clean end).
        expired = true
        context.fireErrorCaught(Expired(timeout: timeout))
        if answer {
            let requestId = FrontMiddleware.requestId(from: headsRead > requestsRead ? clientRequestId : nil)
            let error = GatewayError.requestTimeout(ms: Int(timeout.nanoseconds / 1_000_000))
            let body = ByteBuffer(string: JSON.encode(ErrorEnvelope(error, requestId: requestId)) + "\n")
            let head = HTTPResponse(status: .requestTimeout, headerFields: [
                .contentType: "application/json", .contentLength: String(body.readableBytes),
                .connection: "close", .requestId: requestId,
            ])
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(body)), promise: nil)
            let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
            written.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        } else {
            context.close(promise: nil)
        }
    }
}

/// Notes that bytes arrived (before HTTP decoding), so the timeout can tell a request that is
/// trickling in (408) from a connection where nothing was sent (silent close).
private final class InputObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    var seen = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        seen = true
        context.fireChannelRead(data)
    }
}
