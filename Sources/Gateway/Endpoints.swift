import Foundation
import GatewayClient
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Wire

/// The HTTP endpoints. Each answer request: read the body (bounded) → validate → admit
/// (concurrency limit) → `AnswerRun` → render as JSON, SSE, or OpenAI JSON / chunks.
struct Endpoints: Sendable {
    let config: GatewayConfig
    let backend: AnswerBackend
    let metrics: GatewayMetrics
    let limiter: ConcurrencyLimiter
    let drain: GatewayDrain
    let quotas: ClientQuotas
    /// The audit trail, when there is one: `/readyz` says not ready while it refuses requests.
    var audit: GatewayAudit? = nil

    /// Every endpoint and its one method. A method an endpoint lacks gets `405` with `Allow`
    /// (RFC 9110), not `404`: the path exists.
    static let routes: [(path: String, method: HTTPRequest.Method)] = [
        ("/v1/answer", .post), ("/v1/chat/completions", .post), ("/v1/models", .get),
        ("/healthz", .get), ("/readyz", .get), ("/metrics", .get),
    ]

    func register(on router: Router<GatewayRequestContext>) {
        router.post("/v1/answer") { request, context in try await self.answer(request, context) }
        router.post("/v1/chat/completions") { request, context in try await self.chat(request, context) }
        router.get("/v1/models") { _, _ in await self.models() }
        router.get("/healthz") { _, _ in Self.json(#"{"status":"ok"}"#) }
        router.get("/readyz") { _, _ in await self.ready() }
        router.get("/metrics") { _, _ in await self.metricsText() }
        for (path, method) in Self.routes {
            let others: [HTTPRequest.Method] = [.get, .post, .put, .delete, .patch, .options] + (method == .get ? [] : [.head])
            for other in others where other != method {
                router.on(RouterPath(path), method: other) { _, _ -> Response in
                    throw GatewayError.methodNotAllowed(path: path, allowed: method)
                }
            }
        }
    }

    // MARK: /v1/models

    /// OpenAI's model list: the one model this cluster serves (its experts and their live
    /// replicas in an extra `mambaformer` field; `n` is always 1).
    func models() async -> Response {
        let status = await backend.status()
        let name = JSON.encode(config.modelName)
        return Self.json(#"{"object":"list","data":[{"id":\#(name),"object":"model","created":0,"owned_by":"mambaformer","#
            + #""mambaformer":{"experts":{"emamba":{"replicas":\#(status.emambaReplicas)},"et5":{"replicas":\#(status.et5Replicas)}},"#
            + #""max_n":1}}]}"#)
    }

    // MARK: /v1/answer

    func answer(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        var request = request
        let params = try RequestParsing.answer(try await readBody(&request), config: config)
        context.audit.prompt(question: params.question, context: params.context)
        let run = try await startRun(params, context)
        return try await closingConnection {
            if !params.stream {
                let result = try await collect(run, request: request)
                context.audit.answered(result)
                return Self.json(JSON.encode(result))
            }
            let first = try await firstStep(run)
            return sse(run, first: first, request: request, audit: context.audit) { step in
                switch step {
                case .span(let span):
                    return .write("event: span\nid: \(span.spanIndex)\ndata: \(JSON.encode(SpanEvent(span, logprobs: params.logprobs)))\n\n")
                case .text(let text):
                    // With `stop`: text held back in case it began a stop string, released at the end.
                    return .write("event: text\ndata: \(JSON.encode(["text": text]))\n\n")
                case .idle:
                    return .write(": keep-alive\n\n")
                case .finished(let answer):
                    return .last("event: done\ndata: \(JSON.encode(answer))\n\n")
                case .failed(let error):
                    self.metrics.streamError(code: error.code)
                    return .last("event: error\ndata: \(JSON.encode(ErrorEnvelope(error, requestId: run.requestId)))\n\n")
                }
            }
        }
    }

    // MARK: /v1/chat/completions

    func chat(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        var request = request
        let chat = try RequestParsing.chat(try await readBody(&request), config: config)
        context.audit.prompt(question: chat.params.question, context: chat.params.context)
        let run = try await startRun(chat.params, context)
        let id = "chatcmpl-\(run.requestId)"
        let created = Int(Date().timeIntervalSince1970)
        return try await closingConnection {
            if !chat.params.stream {
                let answer = try await collect(run, request: request)
                context.audit.answered(answer)
                let completion = ChatCompletion(
                    id: id, created: created, model: chat.model,
                    choices: [.init(message: .init(content: answer.answer),
                                    finishReason: ChatFormat.finishReason(answer.finishReason),
                                    logprobs: chat.params.logprobs ? ChatLogprobs(answer.logprobs ?? []) : nil)],
                    usage: ChatUsage(answer.usage), mambaformer: ChatRouting(answer))
                return Self.json(JSON.encode(completion))
            }
            let first = try await firstStep(run)
            @Sendable func chunk(_ delta: ChatChunk.Delta, finish: String? = nil, routing: ChatChunk.Routing? = nil,
                                 logprobs: ChatLogprobs? = nil) -> String {
                "data: " + JSON.encode(ChatChunk(id: id, created: created, model: chat.model,
                                                 choices: [.init(delta: delta, finishReason: finish, logprobs: logprobs)],
                                                 mambaformer: routing)) + "\n\n"
            }
            // OpenAI streams open with a role-only delta.
            let opening = chunk(.init(role: "assistant", content: ""))
            return sse(run, first: first, request: request, audit: context.audit, preamble: opening) { step in
                switch step {
                case .span(let span):
                    return .write(chunk(.init(content: span.text), routing: .span(.init(span)),
                                        logprobs: chat.params.logprobs ? ChatLogprobs(TokenLogprobEntry.entries(span)) : nil))
                case .text(let text):
                    return .write(chunk(.init(content: text)))
                case .idle:
                    return .write(": keep-alive\n\n")
                case .finished(let answer):
                    var text = chunk(.init(), finish: ChatFormat.finishReason(answer.finishReason),
                                     routing: .final(ChatRouting(answer)))
                    if chat.includeUsageInStream {
                        text += "data: " + JSON.encode(ChatChunk(id: id, created: created, model: chat.model, choices: [],
                                                                 usage: ChatUsage(answer.usage))) + "\n\n"
                    }
                    return .last(text + "data: [DONE]\n\n")
                case .failed(let error):
                    self.metrics.streamError(code: error.code)
                    return .last("data: \(JSON.encode(ErrorEnvelope(error, requestId: run.requestId)))\n\n")
                }
            }
        }
    }

    /// Once an answer has started, the connection is watched for the client hanging up
    /// (`consumeWithInboundCloseHandler`), after which Hummingbird closes it: every response from
    /// here on says `Connection: close` so that keep-alive clients open a fresh connection
    /// instead of writing into a closed one. (One TCP handshake per answer is negligible next to
    /// generation; cancelling abandoned work is not.)
    private func closingConnection(_ body: () async throws -> Response) async throws -> Response {
        do {
            var response = try await body()
            response.headers[.connection] = "close"
            return response
        } catch var error as GatewayError {
            error.closesConnection = true
            throw error
        }
    }

    // MARK: Probes and metrics

    func ready() async -> Response {
        let status = await backend.status()
        metrics.backend(status)
        let draining = drain.isDraining
        // A gateway whose audit log refuses requests is taken out of the load balancer's rotation.
        let ready = !draining && status.isReady(requiring: config.readyRequiresPools) && !(audit?.refusesRequests ?? false)
        let body = #"{"status":"\#(draining ? "draining" : ready ? "ready" : "not_ready")","router_reachable":\#(status.routerReachable),"#
            + #""routers":{"reachable":\#(status.routersReachable),"configured":\#(status.routersConfigured)},"#
            + #""replicas":{"emamba":\#(status.emambaReplicas),"et5":\#(status.et5Replicas)}}"#
        var response = Self.json(body, status: ready ? .ok : .serviceUnavailable)
        if !ready { response.headers[.retryAfter] = String(config.retryAfterSeconds) }
        return response
    }

    func metricsText() async -> Response {
        metrics.backend(await backend.status())
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                        body: .init(byteBuffer: ByteBuffer(string: metrics.render())))
    }

    // MARK: Shared steps

    /// The body, at most `maxBodyBytes` (413 beyond, checked on Content-Length first when given).
    private func readBody(_ request: inout Request) async throws -> [UInt8] {
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > config.maxBodyBytes {
            throw GatewayError.bodyTooLarge(limit: config.maxBodyBytes)
        }
        do {
            var buffer = try await request.collectBody(upTo: config.maxBodyBytes)
            return buffer.readBytes(length: buffer.readableBytes) ?? []
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw GatewayError.bodyTooLarge(limit: config.maxBodyBytes)
        } catch is NIOTooManyBytesError {
            // A chunked body (no Content-Length) that grows past the limit.
            throw GatewayError.bodyTooLarge(limit: config.maxBodyBytes)
        }
    }

    private func startRun(_ params: AnswerParams, _ context: GatewayRequestContext) async throws -> AnswerRun {
        if drain.isDraining {
            metrics.answer(outcome: "rejected")
            throw GatewayError.draining(retryAfter: config.retryAfterSeconds)
        }
        // The client's own quota first: a client over its limit learns that, not that the
        // cluster is busy; and a request the cluster refuses is refunded to the client.
        let client = context.client.value
        var quota: ClientQuotas.Permit?
        switch quotas.admit(client: client, maxTokens: params.maxTokens) {
        case .unlimited: break
        case .admitted(let permit): quota = permit
        case .refused(let refusal):
            metrics.answer(outcome: "rejected")
            metrics.quotaRejected(client: client ?? "", limit: refusal.limit)
            throw GatewayError.quotaExceeded(refusal)
        case .impossible(let tpm):
            metrics.quotaRejected(client: client ?? "", limit: "tpm")
            throw GatewayError.maxTokensOverQuota(params.maxTokens, tpm: tpm)
        }
        guard let permit = limiter.tryAcquire(requestId: context.requestId) else {
            quota?.refund()
            metrics.answer(outcome: "rejected")
            throw GatewayError.overloaded(limit: limiter.limit, retryAfter: config.retryAfterSeconds)
        }
        var logger = context.logger
        logger[metadataKey: "request_id"] = .string(permit.requestId)
        // Sizes and settings only: the question and context are patient data.
        logger.debug("answer request", metadata: [
            "question_chars": "\(params.question.count)", "context_chars": "\(params.context.count)",
            "max_tokens": "\(params.maxTokens)", "stream": "\(params.stream)",
            "expert": "\(params.policy.forced)", "cost_weight": "\(params.policy.defaultCostWeight ? "default" : "\(params.policy.costWeight)")",
        ])
        let run = AnswerRun(requestId: permit.requestId, params: params, backend: backend, config: config,
                            metrics: metrics, logger: logger, permit: permit, quota: quota, client: client, started: .now)
        try await run.start()
        return run
    }

    /// Waits for the whole answer. The client hanging up cancels the run (and the router's work).
    private func collect(_ run: AnswerRun, request: Request) async throws -> AnswerResponse {
        let outcome: Result<AnswerResponse, GatewayError> = try await request.body.consumeWithInboundCloseHandler { _ in
            while let step = await run.next() {
                switch step {
                case .span, .text, .idle: continue
                case .finished(let answer): return .success(answer)
                case .failed(let error): return .failure(error)
                }
            }
            return .failure(Self.clientGone)
        } onInboundClosed: {
            Task { await run.cancel() }
        }
        return try outcome.get()
    }

    /// 499: the client closed the connection; nobody reads this response.
    static let clientGone = GatewayError(HTTPResponse.Status(code: 499, reasonPhrase: "Client Closed Request"),
                                         "client_closed", "the client closed the connection")

    /// Streams commit to `200` with their first byte, so wait for the first span (or the first
    /// keep-alive interval) before answering: errors that come earlier — overload, no replica,
    /// deadline — still get their HTTP status.
    private func firstStep(_ run: AnswerRun) async throws -> AnswerRun.Step {
        guard let step = await run.next() else { throw Self.clientGone }
        if case .failed(let error) = step { throw error }
        return step
    }

    enum Frame { case write(String), last(String) }

    /// A `text/event-stream` response fed by the run. A client that disconnects — noticed either
    /// by the inbound side closing or by a failed write — cancels the run on the router.
    /// The audit line is written before the last event; if it cannot be, that event becomes an
    /// `audit_unavailable` error (unless unaudited answers are allowed).
    private func sse(_ run: AnswerRun, first: AnswerRun.Step, request: Request, audit note: AuditNote, preamble: String = "",
                     render: @escaping @Sendable (AnswerRun.Step) -> Frame) -> Response {
        note.streams()
        let retryAfter = config.retryAfterSeconds
        let headers: HTTPFields = [
            .contentType: "text/event-stream; charset=utf-8",
            .cacheControl: "no-cache",
            .accelBuffering: "no",   // nginx: pass events through as they come
        ]
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            do {
                try await request.body.consumeWithInboundCloseHandler { _ in
                    var step: AnswerRun.Step? = first
                    var pending = preamble
                    while let current = step {
                        switch current {
                        case .span(let span): note.streamed(span)
                        case .text(let text): note.streamed(text: text)
                        default: break
                        }
                        switch render(current) {
                        case .write(let text):
                            try await writer.write(ByteBuffer(string: pending + text))
                            pending = ""
                        case .last(var text):
                            if let audit = note.audit {
                                var error: String?
                                switch current {
                                case .finished(let answer): note.answered(answer)
                                case .failed(let failure): note.answered(failure.partial); error = failure.code
                                default: break
                                }
                                if !(await audit.seal(note, status: 200, error: error)),
                                   case .last(let refusal) = render(.failed(.auditUnavailable(retryAfter: retryAfter))) {
                                    text = refusal
                                }
                            }
                            try await writer.write(ByteBuffer(string: pending + text))
                            return
                        }
                        step = await run.next()
                    }
                } onInboundClosed: {
                    Task { await run.cancel() }
                }
            } catch {
                await run.cancel()
                await Self.sealCutShort(note)
                throw error
            }
            // Ended without its last event (the client hung up): what was sent is audited.
            await Self.sealCutShort(note)
            try await writer.finish(nil)
        })
    }

    /// The line of a stream that ended before its last event, with the text it had sent.
    static func sealCutShort(_ note: AuditNote) async {
        if let audit = note.audit, !note.isSealed { _ = await audit.seal(note, status: 200, error: "client_closed") }
    }

    static func json(_ body: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"],
                 body: .init(byteBuffer: ByteBuffer(string: body + "\n")))
    }
}
