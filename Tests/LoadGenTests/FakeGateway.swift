import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A deliberately misbehaving `/v1/answer` on an ephemeral loopback port: each request gets
/// the next behaviour of a cycle (so N × cycle-length requests see each exactly N times,
/// whatever order concurrent clients arrive in).
final class FakeGateway: @unchecked Sendable {
    enum Behavior: Sendable {
        /// 200 with an answer of 8 tokens (emamba 6, et5 2) after `delayMs`.
        case ok(delayMs: Int)
        /// An error status with the gateway's error envelope.
        case status(Int, code: String)
        /// Answers only after `ms` (past the client's timeout).
        case slow(ms: Int)
        /// Closes the connection without a response.
        case close
        /// 200 with a body that is not an answer.
        case garbage
        /// SSE: `spans` span events of `tokens` each, `gapMs` apart (the first after `gapMs`), then done.
        case stream(spans: Int, tokens: Int, gapMs: Int)
        /// SSE: one span, then the gateway's error event.
        case streamThenError
        /// OpenAI: a `chat.completion` of 8 tokens.
        case chat
        /// OpenAI SSE: a role chunk, `chunks` text chunks `gapMs` apart, a finish chunk, a usage
        /// chunk of `tokens` completion tokens when `usage`, then `[DONE]`.
        case chatStream(chunks: Int, tokens: Int, gapMs: Int, usage: Bool)
        /// OpenAI SSE: one text chunk, then an error object with a null code (as vLLM sends).
        case chatStreamThenError
    }

    let behaviors: [Behavior]
    private let counter = NIOLockedValueBox(0)
    private let bodies = NIOLockedValueBox<[String]>([])
    private let paths = NIOLockedValueBox<[String]>([])
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private var channel: Channel?
    private(set) var port = 0

    init(_ behaviors: [Behavior]) throws {
        self.behaviors = behaviors
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(FakeHandler(server: self))
                }
            }
        let channel = try bootstrap.bind(host: "127.0.0.1", port: 0).wait()
        self.channel = channel
        port = channel.localAddress?.port ?? 0
    }

    var url: URL { URL(string: "http://127.0.0.1:\(port)")! }
    var requestBodies: [String] { bodies.withLockedValue { $0 } }
    /// The path of every counted request, in arrival order.
    var requestPaths: [String] { paths.withLockedValue { $0 } }

    fileprivate func next(body: String, path: String) -> Behavior {
        bodies.withLockedValue { $0.append(body) }
        paths.withLockedValue { $0.append(path) }
        return counter.withLockedValue { n in
            defer { n += 1 }
            return behaviors[n % behaviors.count]
        }
    }

    func shutdown() {
        try? channel?.close().wait()
        try? group.syncShutdownGracefully()
    }

    static let answerJSON = """
    {"id":"fake","answer":"a b c","finish_reason":"length",\
    "usage":{"prompt_tokens":5,"completion_tokens":8,"emamba_tokens":6,"et5_tokens":2},\
    "trace":[{"span":0,"expert":"emamba","replica":"e1","tokens":4,"gate_score":0.1,"ms":1},\
    {"span":1,"expert":"et5","replica":"t1","tokens":2,"gate_score":0.9,"ms":1},\
    {"span":2,"expert":"emamba","replica":"e1","tokens":2,"gate_score":0.2,"ms":1}],\
    "timings":{"queue_ms":0,"total_ms":3}}
    """
}

private final class FakeHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let server: FakeGateway
    var body = ""
    var isProbe = false
    var isModels = false
    var path = ""
    init(server: FakeGateway) { self.server = server }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            body = ""
            isProbe = head.method == .GET && head.uri.hasSuffix("/readyz")
            isModels = head.method == .GET && head.uri.hasSuffix("/v1/models")
            path = head.uri
        case .body(let b): body += String(buffer: b)
        case .end:
            // The load generator's replica sampling: answered, never counted as a request.
            if isProbe { return send(context, 200, #"{"status":"ready","router_reachable":true,"replicas":{"emamba":2,"et5":1}}"#) }
            if isModels { return send(context, 200, #"{"object":"list","data":[{"id":"fake-model","object":"model","owned_by":"test"}]}"#) }
            respond(context, server.next(body: body, path: path))
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ behavior: FakeGateway.Behavior) {
        let loop = context.eventLoop
        switch behavior {
        case .ok(let delay):
            loop.scheduleTask(in: .milliseconds(Int64(delay))) { self.send(context, 200, FakeGateway.answerJSON) }
        case .status(let status, let code):
            send(context, status, #"{"error":{"code":"\#(code)","message":"fake","request_id":"x","type":"server_error"}}"#)
        case .slow(let ms):
            loop.scheduleTask(in: .milliseconds(Int64(ms))) { self.send(context, 200, FakeGateway.answerJSON) }
        case .close:
            context.close(promise: nil)
        case .garbage:
            send(context, 200, "this is not an answer")
        case .stream(let spans, let tokens, let gap):
            writeHead(context, sse: true)
            for i in 0..<spans {
                loop.scheduleTask(in: .milliseconds(Int64(gap * (i + 1)))) {
                    self.event(context, "span", #"{"span":\#(i),"text":"t","expert":"emamba","replica":"e1","tokens":\#(tokens),"gate_score":0.1,"ms":1}"#)
                }
            }
            loop.scheduleTask(in: .milliseconds(Int64(gap * spans + 5))) {
                let done = """
                {"id":"fake","answer":"t","finish_reason":"length",\
                "usage":{"prompt_tokens":5,"completion_tokens":\(spans * tokens),"emamba_tokens":\(spans * tokens),"et5_tokens":0},\
                "trace":[\((0..<spans).map { #"{"span":\#($0),"expert":"emamba","replica":"e1","tokens":\#(tokens),"gate_score":0.1,"ms":1}"# }.joined(separator: ","))],\
                "timings":{"queue_ms":0,"total_ms":3}}
                """
                self.event(context, "done", done)
                context.writeAndFlush(self.wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
            }
        case .chat, .chatStream, .chatStreamThenError:
            chatResponse(context, behavior)
        case .streamThenError:
            writeHead(context, sse: true)
            event(context, "span", #"{"span":0,"text":"t","expert":"emamba","replica":"e1","tokens":4,"gate_score":0.1,"ms":1}"#)
            event(context, "error", #"{"error":{"code":"deadline_exceeded","message":"late","request_id":"x","type":"timeout"}}"#)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
        }
    }

    private func chatResponse(_ context: ChannelHandlerContext, _ behavior: FakeGateway.Behavior) {
        let loop = context.eventLoop
        func chunk(_ delta: String, finish: String? = nil) -> String {
            #"{"id":"c","object":"chat.completion.chunk","created":1,"model":"fake-model","choices":[{"index":0,"delta":\#(delta),"finish_reason":\#(finish.map { "\"\($0)\"" } ?? "null")}]}"#
        }
        switch behavior {
        case .chat:
            send(context, 200, #"{"id":"c","object":"chat.completion","created":1,"model":"fake-model","choices":[{"index":0,"message":{"role":"assistant","content":"a b c"},"finish_reason":"length"}],"usage":{"prompt_tokens":5,"completion_tokens":8,"total_tokens":13}}"#)
        case .chatStream(let chunks, let tokens, let gap, let usage):
            writeHead(context, sse: true)
            data(context, chunk(#"{"role":"assistant","content":""}"#))
            for i in 0..<chunks {
                loop.scheduleTask(in: .milliseconds(Int64(gap * (i + 1)))) { self.data(context, chunk(#"{"content":"t\#(i) "}"#)) }
            }
            loop.scheduleTask(in: .milliseconds(Int64(gap * chunks + 5))) {
                self.data(context, chunk("{}", finish: "length"))
                if usage {
                    self.data(context, #"{"id":"c","object":"chat.completion.chunk","created":1,"model":"fake-model","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":\#(tokens),"total_tokens":\#(tokens + 5)}}"#)
                }
                self.data(context, "[DONE]")
                context.writeAndFlush(self.wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
            }
        case .chatStreamThenError:
            writeHead(context, sse: true)
            data(context, chunk(#"{"content":"t"}"#))
            data(context, #"{"error":{"message":"the engine died","type":"server_error","code":null}}"#)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
        default:
            send(context, 500, "not a chat behavior")
        }
    }

    /// An unnamed SSE event (OpenAI's chunks).
    private func data(_ context: ChannelHandlerContext, _ data: String) {
        guard context.channel.isActive else { return }
        context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: "data: \(data)\n\n")))), promise: nil)
    }

    private func writeHead(_ context: ChannelHandlerContext, sse: Bool) {
        var head = HTTPResponseHead(version: .http1_1, status: .ok)
        head.headers.add(name: "Content-Type", value: sse ? "text/event-stream" : "application/json")
        head.headers.add(name: "Connection", value: "close")
        context.writeAndFlush(wrapOutboundOut(.head(head)), promise: nil)
    }

    private func event(_ context: ChannelHandlerContext, _ name: String, _ data: String) {
        guard context.channel.isActive else { return }
        let text = "event: \(name)\ndata: \(data)\n\n"
        context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: text)))), promise: nil)
    }

    private func send(_ context: ChannelHandlerContext, _ status: Int, _ text: String) {
        guard context.channel.isActive else { return }
        var head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status))
        head.headers.add(name: "Content-Type", value: "application/json")
        head.headers.add(name: "Content-Length", value: "\(text.utf8.count)")
        head.headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: text)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
    }
}
