import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Wire
import XCTest
@testable import Gateway

/// openapi.yaml must describe what the server does: every status the server returns in these
/// scenarios is documented for that operation, and every documented status is produced by a scenario.
final class OpenAPIConformanceTests: XCTestCase {
    struct Operation: Hashable, CustomStringConvertible {
        var method: String
        var path: String
        var description: String { "\(method.uppercased()) \(path)" }
    }

    /// The `paths:` section of openapi.yaml → documented response codes per operation.
    /// (A small indentation reader: the test target has no YAML library, and the file's layout is ours.)
    static func documentedResponses() throws -> [Operation: Set<Int>] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("openapi.yaml")
        let text = try String(contentsOf: url, encoding: .utf8)
        var result: [Operation: Set<Int>] = [:]
        var inPaths = false, path: String?, method: String?, inResponses = false
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(raw)
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let indent = line.prefix(while: { $0 == " " }).count
            if indent == 0 { inPaths = trimmed == "paths:"; continue }
            guard inPaths else { continue }
            switch indent {
            case 2: path = String(trimmed.dropLast()); method = nil; inResponses = false
            case 4: method = String(trimmed.dropLast()); inResponses = false
            case 6: inResponses = trimmed == "responses:"
            case 8 where inResponses:
                if let path, let method, let code = Int(trimmed.replacingOccurrences(of: "\"", with: "").dropLast()) {
                    result[Operation(method: method, path: path), default: []].insert(code)
                }
            default: break
            }
        }
        return result
    }

    func testServerStatusesMatchTheDocumentedResponses() async throws {
        let documented = try Self.documentedResponses()
        XCTAssertEqual(documented[Operation(method: "post", path: "/v1/answer")],
                       [200, 400, 401, 413, 422, 429, 502, 503, 504])
        var observed: [Operation: Set<Int>] = [:]
        let token = "conformance-token-0123456789"
        let auth: HTTPFields = [.authorization: "Bearer \(token)", .contentType: "application/json"]

        typealias Call = (method: String, path: String, body: String?, headers: HTTPFields?)
        func run(_ backend: FakeBackend, _ requests: [Call]) async throws {
            let seen = try await TestSupport.app(backend, { $0.authTokens = [token] }).test(.router) { client in
                var seen: [(Operation, Int)] = []
                for (method, path, body, headers) in requests {
                    let r = try await client.execute(uri: path, method: method == "get" ? .get : .post,
                                                     headers: headers ?? auth, body: body.map { ByteBuffer(string: $0) })
                    seen.append((Operation(method: method, path: path), r.status.code))
                    if r.status.code >= 400, path.hasPrefix("/v1/") { _ = try TestSupport.error(r) }
                }
                return seen
            }
            for (operation, status) in seen { observed[operation, default: []].insert(status) }
        }
        for path in ["/v1/answer", "/v1/chat/completions"] {
            let chat = path.hasSuffix("completions")
            func body(_ extra: String = "", question: String = "q") -> String {
                chat ? #"{"messages": [{"role": "user", "content": "\#(question)"}]\#(extra)}"#
                     : #"{"question": "\#(question)"\#(extra)}"#
            }
            try await run(FakeBackend.simple(), [
                ("post", path, body(), nil),                                            // 200
                ("post", path, body(", \"stream\": true"), nil),                       // 200 SSE
                ("post", path, "{oops", nil),                                           // 400
                ("post", path, body(), HTTPFields([HTTPField(name: .contentType, value: "application/json")])), // 401
                ("post", path, body(question: String(repeating: "x", count: 5000)), nil), // 413
                ("post", path, body(question: " "), nil),                               // 422
            ])
            try await run(FakeBackend { _ in [.error(.overloaded)] }, [("post", path, body(), nil)])          // 429
            try await run(FakeBackend { _ in [.span(0, "a"), .span(2, "c"), .hang] }, [("post", path, body(), nil)]) // 502
            try await run(FakeBackend { _ in [.error(.unavailable)] }, [("post", path, body(), nil)])         // 503
            try await run(FakeBackend { _ in [.span(0, "a"), .hang] }, [("post", path, body(", \"deadline_ms\": 100"), nil)]) // 504
        }
        // 429 from the gateway's own limit (no permit left: limit 1, one request parked).
        let parked = FakeBackend { _ in [.hang] }
        try await TestSupport.app(parked, { $0.maxConcurrent = 1; $0.authTokens = [token] }).test(.ahc(.http)) { client in
            let first = Task { try await TestSupport.post(client, "/v1/answer", #"{"question": "q", "deadline_ms": 1500}"#, headers: auth) }
            while parked.submitted.isEmpty { try await Task.sleep(for: .milliseconds(10)) }
            let second = try await TestSupport.post(client, "/v1/answer", #"{"question": "q"}"#, headers: auth)
            XCTAssertEqual(second.status, .tooManyRequests)
            XCTAssertEqual(second.headers[.retryAfter], "1")
            let firstStatus = try await first.value.status
            XCTAssertEqual(firstStatus, .gatewayTimeout)
        }

        try await run(FakeBackend.simple(), [("get", "/v1/models", nil, nil), ("get", "/v1/models", nil, [:])])   // 200, 401

        let probes = FakeBackend.simple()
        try await run(probes, [("get", "/healthz", nil, [:]), ("get", "/readyz", nil, [:]), ("get", "/metrics", nil, [:])])
        probes.setStatus(BackendStatus(routerReachable: false, emambaReplicas: 0, et5Replicas: 0))
        try await run(probes, [("get", "/readyz", nil, [:])])

        for (operation, statuses) in observed {
            let docs = try XCTUnwrap(documented[operation], "\(operation) is not in openapi.yaml")
            XCTAssertTrue(statuses.isSubset(of: docs), "\(operation): server returned \(statuses.subtracting(docs).sorted()), undocumented")
        }
        for (operation, docs) in documented {
            let seen = observed[operation] ?? []
            XCTAssertEqual(docs.subtracting(seen), [], "\(operation): documented but not exercised")
        }
    }

    /// A method a path does not take: 405 with `Allow`, in the error envelope (not 404).
    func testAMethodAPathLacksIs405WithAllow() async throws {
        try await TestSupport.app(FakeBackend.simple()).test(.router) { client in
            for (method, path, allow) in [(HTTPRequest.Method.get, "/v1/answer", "POST"), (.delete, "/v1/chat/completions", "POST"),
                                          (.post, "/healthz", "GET"), (.put, "/v1/models", "GET"),
                                          (.trace, "/readyz", "GET"), (HTTPRequest.Method("PURGE")!, "/v1/answer", "POST")] {
                let r = try await client.execute(uri: path, method: method)
                XCTAssertEqual(r.status, .methodNotAllowed, "\(method) \(path)")
                XCTAssertEqual(r.headers[.allow], allow)
                XCTAssertEqual(try TestSupport.error(r).code, "method_not_allowed")
            }
            let unknown = try await client.execute(uri: "/v1/nothing", method: .get)
            XCTAssertEqual(unknown.status, .notFound)
        }
    }

    /// OpenAI clients list models first: one entry, the chat endpoint's name, with the experts.
    func testModelsListsTheClusterModel() async throws {
        try await TestSupport.app(FakeBackend.simple()).test(.router) { client in
            let r = try await client.execute(uri: "/v1/models", method: .get)
            XCTAssertEqual(r.status, .ok)
            let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(buffer: r.body)) as? [String: Any])
            XCTAssertEqual(json["object"] as? String, "list")
            let model = try XCTUnwrap((json["data"] as? [[String: Any]])?.first)
            XCTAssertEqual(model["id"] as? String, "mambaformer")
            XCTAssertEqual(model["object"] as? String, "model")
            let experts = (model["mambaformer"] as? [String: Any])?["experts"] as? [String: [String: Int]]
            XCTAssertEqual(experts?["emamba"]?["replicas"], 2)
            XCTAssertEqual(experts?["et5"]?["replicas"], 1)
        }
    }
}
