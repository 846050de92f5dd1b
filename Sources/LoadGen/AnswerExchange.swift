import Foundation
import GatewayClient
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// One `/v1/answer` (or, with the OpenAI API, `/v1/chat/completions`) request over a fresh
/// HTTP/1.1 connection (the gateway answers with `Connection: close` anyway), on SwiftNIO. A hand-sized client rather than URLSession:
/// it time-stamps each SSE event on the event loop as its bytes arrive, tells a refused
/// connect from a mid-response close from a timeout, and its per-request cost stays small
/// at the loads a load generator must sustain.
struct AnswerExchange {
    let host: String
    let port: Int
    let path: String
    let token: String?
    let group: EventLoopGroup
    let api: LoadPlan.API
    /// OpenAI API: the model named in every request.
    let model: String
    let ignoreEOS: Bool

    init(target: URL, api: LoadPlan.API = .native, model: String = "", ignoreEOS: Bool = false,
         token: String?, group: EventLoopGroup) throws {
        guard let host = target.host, !host.isEmpty else { throw LoadGenError.invalidTarget(target.absoluteString) }
        self.host = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        port = target.port ?? 80
        var base = target.path
        if base.hasSuffix("/") { base.removeLast() }
        path = base + (api == .openai ? "/v1/chat/completions" : "/v1/answer")
        self.token = token
        self.group = group
        self.api = api
        self.model = model
        self.ignoreEOS = ignoreEOS
    }

    /// Sends `body` and waits for the complete answer, an error, or `timeout` seconds.
    /// Never throws: every way a request can end is an outcome to count.
    func run(_ body: AnswerBody, requestId: String, intendedNs: UInt64, timeout: Double) async -> RequestOutcome {
        let sentNs = monotonicNs()
        let payload: Data
        do {
            switch api {
            case .native: payload = try JSONEncoder().encode(body)
            case .openai: payload = try JSONEncoder().encode(body.chat(model: model, ignoreEOS: ignoreEOS))
            }
        } catch {
            return RequestOutcome(intendedNs: intendedNs, sentNs: sentNs, endNs: monotonicNs(),
                                  result: .failed(.protocol, code: nil, detail: "cannot encode the request: \(error)"))
        }
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: path)
        head.headers.add(name: "Host", value: port == 80 ? host : "\(host.contains(":") ? "[\(host)]" : host):\(port)")
        head.headers.add(name: "Content-Type", value: "application/json")
        head.headers.add(name: "Content-Length", value: "\(payload.count)")
        head.headers.add(name: "Accept", value: body.stream ? "text/event-stream" : "application/json")
        head.headers.add(name: "X-Request-Id", value: requestId)
        head.headers.add(name: "User-Agent", value: "mambaformer-loadgen")
        if let token { head.headers.add(name: "Authorization", value: "Bearer \(token)") }

        let loop = group.next()
        let promise = loop.makePromise(of: ExchangeHandler.Ending.self)
        let handler = ExchangeHandler(head: head, body: payload, api: api, streaming: body.stream, promise: promise)
        let timeoutAmount = TimeAmount.nanoseconds(Int64(max(0.001, timeout) * 1e9))
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(timeoutAmount)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
        let channelBox = NIOLockedValueBox<Channel?>(nil)
        // The whole exchange (connect included) shares one deadline.
        let timer = loop.scheduleTask(in: timeoutAmount) {
            handler.timedOut()
            channelBox.withLockedValue { $0 }?.close(promise: nil)
        }
        bootstrap.connect(host: host, port: port).whenComplete { result in
            switch result {
            case .success(let channel):
                channelBox.withLockedValue { $0 = channel }
                if handler.hasTimedOut { channel.close(promise: nil) }
            case .failure(let error):
                handler.connectFailed(error)
            }
        }
        let ending: ExchangeHandler.Ending
        do {
            ending = try await withTaskCancellationHandler {
                try await promise.futureResult.get()
            } onCancel: {
                handler.timedOut()
                channelBox.withLockedValue { $0 }?.close(promise: nil)
            }
        } catch {
            ending = ExchangeHandler.Ending(endNs: monotonicNs(), spans: [], result: .failed(.protocol, code: nil, detail: "\(error)"))
        }
        timer.cancel()
        channelBox.withLockedValue { $0 }?.close(promise: nil)
        return RequestOutcome(intendedNs: intendedNs, sentNs: sentNs, endNs: ending.endNs, spans: ending.spans,
                              result: ending.result)
    }
}

/// The channel handler of one exchange: writes the request when the connection is up, reads
/// the response (a JSON body or server-sent events), and completes the promise exactly once.
/// All state is touched on the channel's event loop, except the timeout flag (locked).
final class ExchangeHandler: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    struct Ending: Sendable {
        var endNs: UInt64
        var spans: [(ns: UInt64, tokens: Int)]
        var result: RequestOutcome.Result
    }

    /// A non-streaming answer is a few KB, a stream of long answer some hundred KB; anything
    /// near this is not a server answering our requests.
    static let maxBody = 16 << 20

    private let head: HTTPRequestHead
    private let body: Data
    private let api: LoadPlan.API
    private let streaming: Bool
    private let promise: EventLoopPromise<Ending>
    private let state = NIOLockedValueBox((finished: false, timedOut: false))
    private var status: Int?
    private var buffer: [UInt8] = []
    private var sse = SSEParser()
    private var spans: [(ns: UInt64, tokens: Int)] = []
    private var done: AnswerSummary?
    private var streamFailure: RequestOutcome.Result?
    private var streamedBytes = 0
    /// OpenAI streams: what the chunks said so far.
    private var chat = ChatStream()

    init(head: HTTPRequestHead, body: Data, api: LoadPlan.API, streaming: Bool, promise: EventLoopPromise<Ending>) {
        self.head = head; self.body = body; self.api = api; self.streaming = streaming; self.promise = promise
    }

    var hasTimedOut: Bool { state.withLockedValue { $0.timedOut } }

    func timedOut() {
        let first = state.withLockedValue { s -> Bool in
            if s.finished || s.timedOut { return false }
            s.timedOut = true
            return true
        }
        if first { finish(.failed(.timeout, code: nil, detail: "no complete response within the timeout"), force: true) }
    }

    func connectFailed(_ error: Error) {
        finish(.failed(.connect, code: nil, detail: "\(error)"))
    }

    func channelActive(context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        var bytes = context.channel.allocator.buffer(capacity: body.count)
        bytes.writeBytes(body)
        context.write(wrapOutboundOut(.body(.byteBuffer(bytes))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let response):
            status = Int(response.status.code)
        case .body(let chunk):
            if streaming && status == 200 {
                let now = monotonicNs()
                streamedBytes += chunk.readableBytes
                if streamedBytes > Self.maxBody {
                    finish(.failed(.protocol, code: nil, detail: "stream over \(Self.maxBody) bytes"))
                    context.close(promise: nil)
                    return
                }
                for event in sse.feed(chunk.readableBytesView) {
                    switch api {
                    case .native: take(event, at: now)
                    case .openai: takeChunk(event, at: now)
                    }
                }
                if done != nil || streamFailure != nil { complete(context) }
            } else {
                buffer.append(contentsOf: chunk.readableBytesView)
                if buffer.count > Self.maxBody {
                    finish(.failed(.protocol, code: nil, detail: "response body over \(Self.maxBody) bytes"))
                    context.close(promise: nil)
                }
            }
        case .end:
            complete(context)
        }
    }

    /// One server-sent event of a streaming answer.
    private func take(_ event: SSEParser.Event, at ns: UInt64) {
        let data = Data(event.data.utf8)
        switch event.name {
        case "span":
            struct SpanEvent: Decodable { var tokens: Int }
            if let span = try? JSONDecoder().decode(SpanEvent.self, from: data) {
                spans.append((ns, span.tokens))
            } else {
                streamFailure = .failed(.protocol, code: nil, detail: "unparsable span event")
            }
        case "done":
            do { done = try JSONDecoder().decode(AnswerSummary.self, from: data) } catch {
                streamFailure = .failed(.protocol, code: nil, detail: "unparsable done event: \(error)")
            }
        case "error":
            streamFailure = .failed(.streamError, code: errorCode(data) ?? "unknown", detail: "error event after the stream began")
        default:
            break
        }
    }

    /// One event of an OpenAI stream: a `chat.completion.chunk`, an error object, or `[DONE]`.
    /// Each chunk with text counts as a "span" for time to first token and per-token latency;
    /// how many tokens each carried is known only at the end (the usage chunk), so it is set then.
    private func takeChunk(_ event: SSEParser.Event, at ns: UInt64) {
        if event.data == "[DONE]" {
            done = chat.summary()
            spans = chat.spans(arrivals: spans.map(\.ns))
            return
        }
        switch chat.take(Data(event.data.utf8)) {
        case .text: spans.append((ns, 0))
        case .nothing: break
        case .error(let code): streamFailure = .failed(.streamError, code: code ?? "unknown", detail: "error object after the stream began")
        case .unparsable(let why): streamFailure = .failed(.protocol, code: nil, detail: "unparsable chunk: \(why)")
        }
    }

    /// The response ended (or a streaming answer delivered its last event).
    private func complete(_ context: ChannelHandlerContext) {
        defer { context.close(promise: nil) }
        guard let status else {
            finish(.failed(.protocol, code: nil, detail: "no response head"))
            return
        }
        guard status == 200 else {
            let data = Data(buffer)
            finish(.failed(ErrorClass.forStatus(status), code: errorCode(data),
                           detail: "HTTP \(status)"))
            return
        }
        if streaming {
            if let streamFailure { finish(streamFailure); return }
            if let done { finish(.ok(done)); return }
            finish(.failed(.protocol, code: nil, detail: "the stream ended without a done event"))
            return
        }
        do {
            switch api {
            case .native: finish(.ok(try JSONDecoder().decode(AnswerSummary.self, from: Data(buffer))))
            case .openai: finish(.ok(try JSONDecoder().decode(ChatCompletion.self, from: Data(buffer)).summary))
            }
        } catch {
            finish(.failed(.protocol, code: nil, detail: "unparsable answer: \(error)"))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(.failed(.protocol, code: nil, detail: "the connection closed before the response ended"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        finish(.failed(.protocol, code: nil, detail: "\(error)"))
        context.close(promise: nil)
    }

    /// Completes once; later endings (the close after a timeout, the inactive after an end)
    /// are ignored. `force` lets the timeout win over a concurrent finish.
    private func finish(_ result: RequestOutcome.Result, force: Bool = false) {
        let first = state.withLockedValue { s -> Bool in
            if s.finished { return false }
            if s.timedOut && !force { return false }
            s.finished = true
            return true
        }
        guard first else { return }
        let spans = promise.futureResult.eventLoop.inEventLoop ? self.spans : []
        promise.succeed(Ending(endNs: monotonicNs(), spans: spans, result: result))
    }
}

/// `{"error": {"code": ...}}` → the code.
func errorCode(_ data: Data) -> String? {
    struct Envelope: Decodable { var error: ErrorObject }
    return (try? JSONDecoder().decode(Envelope.self, from: data))?.error.name
}

/// An error object's code; OpenAI-style servers may leave `code` null (or make it a number)
/// and say `type` instead.
struct ErrorObject: Decodable {
    var name: String?
    enum CodingKeys: String, CodingKey { case code, type }
    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let code = (try? c.decodeIfPresent(String.self, forKey: .code)) ?? (try? c.decodeIfPresent(Int.self, forKey: .code))?.map(String.init)
        name = code ?? (try? c.decodeIfPresent(String.self, forKey: .type)) ?? nil
    }
}
