import Foundation
@testable import Gateway
import GatewayClient
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import XCTest

enum TestSupport {
    static func config(_ change: (inout GatewayConfig) -> Void = { _ in }) -> GatewayConfig {
        var c = GatewayConfig(host: "127.0.0.1", port: 0)
        c.maxBodyBytes = 4096
        c.maxPromptBytes = 1000
        c.maxTokens = 256
        c.defaultMaxTokens = 64
        c.maxConcurrent = 8
        c.spanGapTimeoutMs = 300
        c.deadlineGraceMs = 50
        change(&c)
        return c
    }

    static func app(_ backend: AnswerBackend, metrics: GatewayMetrics = GatewayMetrics(), drain: GatewayDrain = GatewayDrain(),
                    _ change: (inout GatewayConfig) -> Void = { _ in }) -> some ApplicationProtocol {
        var logger = Logger(label: "gateway-test")
        logger.logLevel = .warning
        return makeGatewayApplication(config: config(change), backend: backend, logger: logger, metrics: metrics, drain: drain)
    }

    static func body(_ json: String) -> ByteBuffer { ByteBuffer(string: json) }

    static func text(_ response: TestResponse) -> String { String(buffer: response.body) }

    static func decode<T: Decodable>(_ type: T.Type, _ response: TestResponse,
                                     file: StaticString = #filePath, line: UInt = #line) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(text(response).utf8))
        } catch {
            XCTFail("cannot decode \(T.self) from \(text(response)): \(error)", file: file, line: line)
            throw error
        }
    }

    /// The `{"error": {...}}` body, checking the envelope is well formed.
    static func error(_ response: TestResponse, file: StaticString = #filePath, line: UInt = #line) throws -> ErrorEnvelope.Body {
        XCTAssertEqual(response.headers[.contentType], "application/json", file: file, line: line)
        let body = try decode(ErrorEnvelope.self, response, file: file, line: line).error
        XCTAssertFalse(body.message.isEmpty, file: file, line: line)
        XCTAssertEqual(body.requestId, response.headers[HTTPField.Name("X-Request-Id")!], file: file, line: line)
        return body
    }

    static func sse(_ response: TestResponse) -> [SSEParser.Event] {
        var parser = SSEParser()
        return parser.feed(Array(text(response).utf8))
    }

    static func post(_ client: some TestClientProtocol, _ path: String, _ json: String,
                     headers: HTTPFields = [.contentType: "application/json"]) async throws -> TestResponse {
        try await client.execute(uri: path, method: .post, headers: headers, body: body(json))
    }
}
