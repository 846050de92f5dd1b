import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A small client for the gateway's `/v1/answer`, used by `mambaformer ask` and the tests.
/// URLSession (FoundationNetworking on Linux), so it also speaks HTTPS through a TLS proxy.
public struct GatewayClient: Sendable {
    public var baseURL: URL
    public var token: String?
    public var timeout: TimeInterval

    public init(baseURL: URL, token: String? = nil, timeout: TimeInterval = 600) {
        self.baseURL = baseURL; self.token = token; self.timeout = timeout
    }

    /// The `/v1/answer` request body.
    public struct Query: Encodable, Sendable {
        public var question: String
        public var context: String?
        public var maxTokens: Int?
        public var costWeight: Double?
        public var expert: String?
        public var temperature: Double?
        public var seed: UInt64?
        public var deadlineMs: Int?
        public var stream: Bool = false
        enum CodingKeys: String, CodingKey {
            case question, context, maxTokens = "max_tokens", costWeight = "cost_weight", expert, temperature,
                 seed, deadlineMs = "deadline_ms", stream
        }
        public init(question: String, context: String? = nil, maxTokens: Int? = nil, costWeight: Double? = nil,
                    expert: String? = nil, temperature: Double? = nil, seed: UInt64? = nil, deadlineMs: Int? = nil) {
            self.question = question; self.context = context; self.maxTokens = maxTokens
            self.costWeight = costWeight; self.expert = expert; self.temperature = temperature
            self.seed = seed; self.deadlineMs = deadlineMs
        }
    }

    public enum ClientError: Error, CustomStringConvertible {
        /// The gateway answered with an error status and (usually) a JSON error body.
        case http(status: Int, error: ErrorEnvelope.Body?)
        case transport(String)
        case malformed(String)

        public var description: String {
            switch self {
            case .http(let status, let error?):
                var text = "HTTP \(status) \(error.code): \(error.message) (request \(error.requestId))"
                if let partial = error.partial, !partial.answer.isEmpty {
                    text += "\npartial answer: \(partial.answer)"
                }
                return text
            case .http(let status, nil): return "HTTP \(status) from the gateway"
            case .transport(let message): return "cannot reach the gateway: \(message)"
            case .malformed(let message): return "unexpected response from the gateway: \(message)"
            }
        }
    }

    /// `GET /readyz`: the live replicas per pool, whatever the status (a probe needs no token).
    /// Nil when the gateway does not answer with its JSON.
    public func replicas() async -> (emamba: Int, et5: Int)? {
        var request = URLRequest(url: baseURL.appendingPathComponent("readyz"))
        request.timeoutInterval = 2
        guard let (data, _) = try? await URLSession.shared.data(for: request),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let replicas = json["replicas"] as? [String: Int] else { return nil }
        return (replicas["emamba"] ?? 0, replicas["et5"] ?? 0)
    }

    /// `GET /v1/models`: the model ids an OpenAI-compatible server (this gateway or another) lists.
    public func models() async throws -> [String] {
        var request = URLRequest(url: baseURL.appendingPathComponent("v1/models"))
        request.timeoutInterval = min(timeout, 10)
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        let data: Data, response: URLResponse
        do { (data, response) = try await URLSession.shared.data(for: request) } catch {
            throw ClientError.transport("\(error)")
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard status == 200 else {
            throw ClientError.http(status: status, error: try? JSONDecoder().decode(ErrorEnvelope.self, from: data).error)
        }
        struct List: Decodable { struct Model: Decodable { var id: String }; var data: [Model] }
        guard let list = try? JSONDecoder().decode(List.self, from: data) else {
            throw ClientError.malformed("GET /v1/models is not a model list ({\"data\": [{\"id\": ...}]})")
        }
        return list.data.map(\.id)
    }

    /// Non-streaming: the whole answer at once.
    public func answer(_ query: Query) async throws -> AnswerResponse {
        var query = query
        query.stream = false
        let request = try makeRequest(query)
        let session = URLSession(configuration: .ephemeral)
        defer { session.finishTasksAndInvalidate() }
        let (data, response): (Data, URLResponse)
        do {
            (data, response) = try await session.data(for: request)
        } catch {
            throw ClientError.transport("\(error.localizedDescription)")
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard status == 200 else {
            throw ClientError.http(status: status, error: try? JSONDecoder().decode(ErrorEnvelope.self, from: data).error)
        }
        do {
            return try JSONDecoder().decode(AnswerResponse.self, from: data)
        } catch {
            throw ClientError.malformed("\(error)")
        }
    }

    /// Streaming: `onSpan` is called for every span as it arrives; returns the final object.
    public func streamAnswer(_ query: Query, onSpan: @escaping @Sendable (SpanEvent) -> Void) async throws -> AnswerResponse {
        var query = query
        query.stream = true
        let request = try makeRequest(query)
        let events = SSEStream.open(request)
        var final: AnswerResponse?
        for try await event in events.stream {
            let data = Data(event.data.utf8)
            switch event.name {
            case "span":
                guard let span = try? JSONDecoder().decode(SpanEvent.self, from: data) else {
                    throw ClientError.malformed("bad span event")
                }
                onSpan(span)
            case "done":
                guard let answer = try? JSONDecoder().decode(AnswerResponse.self, from: data) else {
                    throw ClientError.malformed("bad done event")
                }
                final = answer
            case "error":
                throw ClientError.http(status: 200, error: try? JSONDecoder().decode(ErrorEnvelope.self, from: data).error)
            default:
                continue
            }
        }
        guard let final else { throw ClientError.malformed("the stream ended without a done event") }
        return final
    }

    private func makeRequest(_ query: Query) throws -> URLRequest {
        var request = URLRequest(url: baseURL.appendingPathComponent("v1/answer"), timeoutInterval: timeout)
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        request.httpBody = try JSONEncoder().encode(query)
        return request
    }
}

/// Server-sent events from a URLSession data task, as an async stream. A non-200 response
/// ends the stream with `GatewayClient.ClientError.http`. `cancel()` closes the connection.
// Sendable: URLSession calls the delegate on its one serial delegate queue; `stream` is
// consumed by one task.
public final class SSEStream: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    public let stream: AsyncThrowingStream<SSEParser.Event, Error>
    private let continuation: AsyncThrowingStream<SSEParser.Event, Error>.Continuation
    private var parser = SSEParser()
    private var status = 0
    private var errorBody = Data()
    private var session: URLSession?
    private var task: URLSessionDataTask?

    private override init() {
        (stream, continuation) = AsyncThrowingStream.makeStream()
        super.init()
    }

    public static func open(_ request: URLRequest) -> SSEStream {
        let sse = SSEStream()
        let queue = OperationQueue()
        queue.maxConcurrentOperationCount = 1   // delegate callbacks in order
        let session = URLSession(configuration: .ephemeral, delegate: sse, delegateQueue: queue)
        sse.session = session
        let task = session.dataTask(with: request)
        sse.task = task
        sse.continuation.onTermination = { _ in task.cancel() }
        task.resume()
        return sse
    }

    public func cancel() {
        task?.cancel()
        session?.invalidateAndCancel()
    }

    public func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                           completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
        status = (response as? HTTPURLResponse)?.statusCode ?? 0
        completionHandler(.allow)
    }

    public func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        if status != 200 { errorBody.append(data); return }
        for event in parser.feed(data) { continuation.yield(event) }
    }

    public func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        if let error {
            continuation.finish(throwing: GatewayClient.ClientError.transport(error.localizedDescription))
        } else if status != 200 {
            continuation.finish(throwing: GatewayClient.ClientError.http(
                status: status, error: try? JSONDecoder().decode(ErrorEnvelope.self, from: errorBody).error))
        } else {
            continuation.finish()
        }
        session.finishTasksAndInvalidate()
    }
}
