import Foundation
#if canImport(Glibc)
import Glibc
#endif
import XCTest

/// A hostile client against a real cluster (issue 14): the door checks every spelling of every
/// path, and prompts built to cost the most (NFKC expansions, one long word, combining-mark
/// runs, maximal JSON escapes, maximum-size prompts forced to each pool) are answered or
/// refused with a 4xx while ordinary questions keep being answered, no replica is lost and
/// memory comes back. Prints the figures RELIABILITY.md's "Hostile clients" table quotes.
final class HostileClientTests: XCTestCase {
    static let token = "hostile-test-token-0123456789"
    static let question = #"{"question":"What is gingivitis?","max_tokens":8}"#

    private func tokenFile(_ harness: ClusterHarness) throws -> String {
        let path = harness.dir.appendingPathComponent("tokens").path
        try "# test client\ntest-client:\(Self.token)\n".write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        return path
    }

    private func post(_ target: String, _ json: String, token: String? = nil, method: String = "POST") -> [UInt8] {
        var headers = ["Content-Type: application/json"]
        if let token { headers.append("Authorization: Bearer \(token)") }
        return RawHTTP.request(method, target, headers: headers, body: Array(json.utf8))
    }

    // MARK: The door

    /// Spellings of the API's paths as a client may write them: repeated slashes, dot segments,
    /// percent-escapes, case, parameters, absolute form, other methods.
    static let spellings: [(String, String)] = {
        var out: [(String, String)] = []
        for path in ["/v1/answer", "/v1/chat/completions"] {
            let tail = String(path.dropFirst("/v1/".count))
            for target in [
                path, "/" + path, "//" + path, path + "/", path + "//", "/v1//" + tail, "/./v1/" + tail, "/v1/./" + tail,
                "/v2/../v1/" + tail, "/v1/" + tail + "?x=1", "/v1/" + tail + "#x", "/V1/" + tail, "/v1/" + tail.uppercased(),
                "/%76%31/" + tail, "/v1%2F" + tail, "/v1/" + tail + "%2F", "/v1/" + tail + ";x=1",
                "http://127.0.0.1" + path, "http://127.0.0.1/" + path, "//127.0.0.1" + path,
            ] { out.append(("POST", target)) }
            for method in ["PUT", "PATCH", "DELETE", "GET", "HEAD", "OPTIONS"] { out.append((method, path)) }
        }
        for target in ["/", "/v1", "/v1/", "/v1/models", "/admin", "*", "/metrics/../v1/answer", "/healthz/../v1/answer",
                       "/healthz?/v1/answer", "/healthz;/v1/answer", "/healthz://x/v1/answer", "/v1;x/answer", "/v1/%61nswer",
                       "/%2e/v1/answer", "/v1\\answer", "/v1/answer%00", "/v1/answer/%c0%af", "/v1/answer*", "/v1/answer ",
                       "http://evil.example/v1/answer", "HTTP://127.0.0.1/v1/answer", "https://127.0.0.1//v1/answer",
                       "http://u:pw@127.0.0.1/v1/answer", "x://y/v1/answer", "v1/answer", "/healthz", "/metrics"] {
            out.append(("POST", target))
        }
        for method in ["TRACE", "QUERY", "PROPFIND", "post", "FOO"] { out.append((method, "/v1/answer")) }
        out.append(("CONNECT", "127.0.0.1:80"))
        return out
    }()

    /// Probes: (target, status without a token). Only spellings the router resolves to the probe are open.
    static let probes: [(String, String, Int)] = [
        ("GET", "/healthz", 200), ("GET", "//healthz/", 200), ("GET", "/healthz?x=1", 200),
        ("GET", "http://evil.example/healthz", 200), ("GET", "/readyz", 200), ("GET", "///readyz///", 200),
        ("GET", "/metrics", 200), ("GET", "//metrics//", 200), ("GET", "/metrics?/healthz", 200),
        ("GET", "/HEALTHZ", 401), ("GET", "/%68ealthz", 401), ("GET", "/healthz;", 401), ("GET", "/./healthz", 401),
        ("GET", "/healthz/..", 401), ("GET", "/healthz/../metrics", 401), ("GET", "/Readyz", 401), ("GET", "/METRICS", 401),
        ("HEAD", "/healthz", 401), ("PUT", "/healthz", 401), ("POST", "/readyz", 401),
    ]

    /// Request targets with raw bytes no String holds (NUL, tab, 0xFF, a BOM, overlong UTF-8):
    /// the HTTP parser refuses them before any routing.
    static let rawTargets: [[UInt8]] = [
        Array("/v1/answer".utf8) + [0x00], Array("/v1/answer".utf8) + [0x09], Array("/v1/answer".utf8) + [0xFF],
        [0xEF, 0xBB, 0xBF] + Array("/v1/answer".utf8), Array("/v1/answer/".utf8) + [0xC0, 0xAF],
    ]

    func testNoPathSpellingReachesAHandlerWithoutAToken() throws {
        let harness = try ClusterHarness()
        defer { harness.stopAll() }
        // No throttle here: every spelling must be judged by the door itself.
        let port = try harness.startSmallCluster(gatewayArguments: ["--auth-tokens-file", try tokenFile(harness)],
                                                 gatewayEnvironment: ["MAMBAFORMER_SECURITY_AUTH_FAILURES_PER_MINUTE": "0"])

        var table: [String] = []
        for (method, target) in Self.spellings {
            let body = target.contains("chat") ? #"{"messages":[{"role":"user","content":"What is a molar?"}],"max_tokens":4}"#
                                               : Self.question
            // A reply to HEAD announces a body it does not send: read the head only.
            // CONNECT's reply has no length and the connection stays open until the read timeout.
            let reply = method == "HEAD" || method == "CONNECT"
                ? try RawHTTP.exchange(port: port, RawHTTP.request(method, target), timeout: 1)
                : try RawHTTP.exchange(port: port, post(target, body, method: method), timeout: 10)
            table.append("| `\(method) \(target)` | \(reply.status.map(String.init) ?? "closed") |")
            let status = reply.status ?? 0
            XCTAssertTrue([400, 401].contains(status), "\(method) \(target) without a token: \(reply.summary)")
        }
        for target in Self.rawTargets {
            let head = Array("POST ".utf8) + target + Array(" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n".utf8)
            let reply = try RawHTTP.exchange(port: port, head, timeout: 5)
            XCTAssertEqual(reply.status, 400, "raw target \(target): \(reply.summary)")
            table.append("| `POST` + raw bytes \(target.map { String(format: "%02x", $0) }.joined()) | \(reply.status.map(String.init) ?? "closed") |")
        }
        // Nothing above started an answer: the gateway counted none.
        let metrics = try RawHTTP.exchange(port: port, RawHTTP.request("GET", "/metrics"), timeout: 5)
        XCTAssertEqual(metrics.status, 200)
        XCTAssertFalse(metrics.body.contains("mambaformer_gateway_answers_total{"), metrics.body)

        // The allow-listed probes answer without a token when the router resolves them as probes.
        for (method, target, expected) in Self.probes {
            let reply = try RawHTTP.exchange(port: port, RawHTTP.request(method, target), timeout: method == "HEAD" ? 1 : 5)
            XCTAssertEqual(reply.status, expected, "\(method) \(target): \(reply.summary)")
            table.append("| `\(method) \(target)` (probe) | \(reply.status.map(String.init) ?? "closed") |")
        }
        // And the real client gets in; two Authorization headers (even both right) do not.
        let ok = try RawHTTP.exchange(port: port, post("/v1/answer", Self.question, token: Self.token))
        XCTAssertEqual(ok.status, 200, ok.summary)
        let twice = RawHTTP.request("POST", "/v1/answer", headers: ["Authorization: Bearer \(Self.token)",
                                                                   "Authorization: Bearer \(Self.token)"],
                                    body: Array(Self.question.utf8))
        XCTAssertEqual(try RawHTTP.exchange(port: port, twice).status, 401)
        // An answer says `Connection: close` and closes, even with a request pipelined behind it
        // (which once held the connection, and the gateway's shutdown, open forever).
        let pipelined = try RawConnection(port: port)
        pipelined.send(post("/v1/answer", Self.question, token: Self.token) + RawHTTP.request("GET", "/healthz"))
        XCTAssertEqual(pipelined.readReply(timeout: 30).status, 200)
        XCTAssertTrue(pipelined.closesWithin(5), "the connection stayed open after an answer with a pipelined request")
        pipelined.close()
        // Every refusal is logged with the client's address.
        XCTAssertTrue(harness.log("gateway").contains("client=127.0.0.1"), harness.log("gateway").suffix(2000).description)

        print("HostileClientTests: \(Self.spellings.count) spellings without a token, none reached a handler")
        print("| request (no token) | status |\n|---|---|\n" + table.joined(separator: "\n"))
    }

    func testRepeatedFailedTokensAreSlowedDown() throws {
        let harness = try ClusterHarness()
        defer { harness.stopAll() }
        let port = try harness.startSmallCluster(gatewayArguments: ["--auth-tokens-file", try tokenFile(harness)],
                                                 gatewayEnvironment: ["MAMBAFORMER_SECURITY_AUTH_FAILURES_PER_MINUTE": "5"])
        for i in 0..<5 {
            let reply = try RawHTTP.exchange(port: port, post("/v1/answer", Self.question, token: "guess-\(i)-0123456789abcdef"))
            XCTAssertEqual(reply.status, 401, reply.summary)
        }
        // Past the limit, even the right token waits: a guesser learns nothing from a 429.
        for token in ["guess-5-0123456789abcdef", Self.token] {
            let reply = try RawHTTP.exchange(port: port, post("/v1/answer", Self.question, token: token))
            XCTAssertEqual(reply.status, 429, reply.summary)
            XCTAssertEqual(reply.errorCode, "auth_throttled", reply.summary)
            let retryAfter = reply.head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("retry-after:") }
            let seconds = retryAfter.flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) }
            XCTAssertNotNil(seconds, reply.head)
            XCTAssertTrue((1...60).contains(seconds ?? 0), reply.head)
        }
        // Probes stay open for orchestrators on the same address.
        XCTAssertEqual(try RawHTTP.exchange(port: port, RawHTTP.request("GET", "/healthz"), timeout: 5).status, 200)
    }

    /// Tokens carry names (in the access log and the `client` label, never the secret) and
    /// are read again on SIGHUP: a client is added or revoked without a restart; a broken
    /// file keeps the tokens in force.
    func testNamedTokensReloadOnSIGHUP() throws {
        let harness = try ClusterHarness()
        defer { harness.stopAll() }
        let file = try tokenFile(harness)
        let port = try harness.startSmallCluster(gatewayArguments: ["--auth-tokens-file", file],
                                                 gatewayEnvironment: ["MAMBAFORMER_SECURITY_AUTH_FAILURES_PER_MINUTE": "0"])
        let newcomer = "triage-tool-0123456789abcdef"
        XCTAssertEqual(try RawHTTP.exchange(port: port, post("/v1/answer", Self.question, token: Self.token)).status, 200)
        XCTAssertEqual(try RawHTTP.exchange(port: port, post("/v1/answer", Self.question, token: newcomer)).status, 401)

        func reload(_ text: String) throws {
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file)
            let before = harness.log("gateway").components(separatedBy: "SIGHUP").count
            harness.signal("gateway", SIGHUP)
            let deadline = Date().addingTimeInterval(10)
            while harness.log("gateway").components(separatedBy: "SIGHUP").count == before, Date() < deadline {
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
        // Add the triage tool, revoke the test client.
        try reload("triage:\(newcomer)\n")
        XCTAssertEqual(try RawHTTP.exchange(port: port, post("/v1/answer", Self.question, token: newcomer)).status, 200)
        XCTAssertEqual(try RawHTTP.exchange(port: port, post("/v1/answer", Self.question, token: Self.token)).status, 401)
        // A broken file (no token) changes nothing and says why.
        try reload("# emptied by mistake\n")
        XCTAssertEqual(try RawHTTP.exchange(port: port, post("/v1/answer", Self.question, token: newcomer)).status, 200)
        XCTAssertTrue(harness.log("gateway").contains("SIGHUP: not reloaded"), harness.log("gateway"))

        let log = harness.log("gateway")
        XCTAssertTrue(log.contains("client_name=test-client") && log.contains("client_name=triage"), log)
        XCTAssertFalse(log.contains(Self.token) || log.contains(newcomer), "a secret reached the log")
        let metrics = try RawHTTP.exchange(port: port, RawHTTP.request("GET", "/metrics"), timeout: 5).body
        XCTAssertTrue(metrics.contains(#"mambaformer_gateway_requests_total{endpoint="/v1/answer",status="200",client="triage"} 2"#), metrics)
        XCTAssertFalse(metrics.contains(newcomer))
    }

    func testAGatewayBeyondLoopbackNeedsTokensOrAnExplicitOptOut() throws {
        let harness = try ClusterHarness()
        defer { harness.stopAll() }
        let port = ClusterHarness.freePort()
        try harness.start("open-gateway", ["gateway", "--listen", "0.0.0.0:\(port)", "--router", harness.frontend])
        XCTAssertNotEqual(harness.waitForExit("open-gateway"), 0, "started without tokens on 0.0.0.0")
        XCTAssertTrue(harness.log("open-gateway").contains("security.allow_unauthenticated"), harness.log("open-gateway"))

        // Tokens but no TLS: refused too (the tokens and the prompts would cross the network in clear).
        let tokens = try tokenFile(harness)
        try harness.start("plain-gateway", ["gateway", "--listen", "0.0.0.0:\(port)", "--router", harness.frontend,
                                            "--auth-tokens-file", tokens])
        XCTAssertNotEqual(harness.waitForExit("plain-gateway"), 0, "served plain HTTP on 0.0.0.0")
        XCTAssertTrue(harness.log("plain-gateway").contains("security.allow_plaintext_http"), harness.log("plain-gateway"))

        try harness.start("proxied-gateway", ["gateway", "--listen", "0.0.0.0:\(port)", "--router", harness.frontend,
                                              "--allow-unauthenticated", "--allow-plaintext-http"])
        let deadline = Date().addingTimeInterval(20)
        var healthy = false
        while Date() < deadline, !healthy {
            healthy = (try? RawHTTP.exchange(port: port, RawHTTP.request("GET", "/healthz"), timeout: 2))?.status == 200
            if !healthy { Thread.sleep(forTimeInterval: 0.1) }
        }
        XCTAssertTrue(healthy, harness.log("proxied-gateway"))
        XCTAssertTrue(harness.log("proxied-gateway").contains("without authentication"), harness.log("proxied-gateway"))
        XCTAssertTrue(harness.log("proxied-gateway").contains("serving plain HTTP"), harness.log("proxied-gateway"))
    }

    // MARK: Hostile prompts

    static func answer(context: String, question: String = "What is this?", expert: String? = nil, maxTokens: Int = 4) -> String {
        var fields: [String: Any] = ["question": question, "context": context, "max_tokens": maxTokens]
        if let expert { fields["expert"] = expert }
        let data = (try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    /// About `n` bytes of ordinary clinical text (the fixture corpus's words).
    static func ordinaryText(bytes n: Int) -> String {
        let seed = (try? String(contentsOf: ClusterHarness.repositoryRoot
            .appendingPathComponent("tools/fixtures/tokenizers/corpus_seed.txt"), encoding: .utf8)) ?? "the gums are inflamed"
        let words = seed.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
        var out = "", i = 0
        while out.utf8.count < n { out += words[i % words.count] + " "; i += 1 }
        return out
    }

    /// (name, body, statuses that count as handled).
    static var hostilePrompts: [(String, String, Set<Int>)] {
        let refused: Set<Int> = [413, 422]
        var random = SystemRandomNumberGenerator()
        let letters = Array("abcdefghijklmnopqrstuvwxyz")
        let longWord = String((0..<32_000).map { _ in letters.randomElement(using: &random)! })
        let units = Array("aß日ع\u{0301}1!\u{200B}\u{202E}\u{05D0}".unicodeScalars)
        var mixed = String.UnicodeScalarView()
        for i in 0..<10_000 { mixed.append(units[i % units.count]) }
        return [
            // The issue's three: NFKC ligatures (one 93,000-letter word over the byte limit, and
            // one that fits the bytes and is refused in tokens), a letter run, ㏂ (four letters each).
            ("31,000 × ﬃ (93 KB, NFKC → 93,000 letters)", answer(context: String(repeating: "\u{FB03}", count: 31_000)), refused),
            ("10,900 × ﬃ (32 KB)", answer(context: String(repeating: "\u{FB03}", count: 10_900)), refused),
            ("\"a\" × 31,990", answer(context: String(repeating: "a", count: 31_990)), refused),
            ("\"㏂\" × 7,900 (NFKC → 31,600 letters)", answer(context: String(repeating: "\u{33C2}", count: 7_900)), refused),
            ("\"a \" × 15,990 forced to ET5", answer(context: String(repeating: "a ", count: 15_990), expert: "et5"), refused),
            ("one 32,000-letter word", answer(context: longWord), refused),
            ("mixed scripts, RTL and zero-width", answer(context: String(mixed)), refused),
            ("combining marks × 16,000", answer(context: "a" + String(repeating: "\u{0301}", count: 16_000)), refused),
            ("Hangul syllables (NFD → 3 jamo each) × 10,000", answer(context: String(repeating: "\u{D55C}", count: 10_000)), refused),
            ("zero-width joiners × 10,000", answer(context: String(repeating: "\u{200D}", count: 10_000)), refused),
            ("maximal JSON escapes (\\u00e9 × 40,000)",
             "{\"question\":\"What?\",\"context\":\"" + String(repeating: "\\u00e9", count: 40_000) + "\",\"max_tokens\":4}", refused),
            ("digits × 32,000", answer(context: String(repeating: "7", count: 32_000)), refused),
            ("punctuation × 32,000", answer(context: String(repeating: "!", count: 32_000)), refused),
        ]
    }

    func testHostilePromptsLeaveTheClusterServing() throws {
        let harness = try ClusterHarness()
        defer { harness.stopAll() }
        // The demo's trained gate (it tokenizes every prompt with EMamba's byte-level BPE, the
        // path one crafted request froze for 100 s), real limits, two EMamba replicas, one ET5.
        try harness.startRouter(gate: "auto", spanTokens: 4)
        for id in ["emamba-1", "emamba-2"] { try harness.startExpert("emamba", id: id) }
        try harness.startExpert("et5", id: "et5-1")
        let port = ClusterHarness.freePort()
        try harness.start("gateway", ["gateway", "--listen", "127.0.0.1:\(port)", "--router", harness.frontend,
                                      "--auth-tokens-file", try tokenFile(harness), "--deadline-ms", "60000"])
        XCTAssertTrue(RawHTTP.waitReady(port: port, emamba: 2, et5: 1), harness.allLogs())
        let nodes = ["router", "emamba-1", "emamba-2", "et5-1", "gateway"]
        let pids = nodes.map { harness.processes[$0]?.processIdentifier }

        // Background: an ordinary client asking questions one after another, and a sampler of
        // each process's resident memory.
        let stop = StopBox()
        let ordinary = Results()
        let peaks = Results()
        let client = Thread { [self] in
            while !stop.isSet {
                let started = Date()
                let reply = try? RawHTTP.exchange(port: port, self.post("/v1/answer", Self.question, token: Self.token), timeout: 30)
                ordinary.add((reply?.status ?? 0, Date().timeIntervalSince(started)))
            }
        }
        let sampler = Thread {
            while !stop.isSet {
                for name in nodes { if let mib = harness.residentMiB(name) { peaks.peak(name, mib) } }
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
        client.start(); sampler.start()
        // ET5's steady state: after a few ordinary answers of its own.
        for _ in 0..<5 {
            let warm = try RawHTTP.exchange(port: port, post("/v1/answer", Self.answer(context: Self.ordinaryText(bytes: 300),
                                                                                    expert: "et5", maxTokens: 8), token: Self.token))
            XCTAssertEqual(warm.status, 200, warm.summary)
        }
        Thread.sleep(forTimeInterval: 1)
        let et5Steady = harness.residentMiB("et5-1") ?? 0

        var table: [String] = []
        for (name, body, allowed) in Self.hostilePrompts {
            let started = Date()
            let reply = try RawHTTP.exchange(port: port, post("/v1/answer", body, token: Self.token), timeout: 20)
            let seconds = Date().timeIntervalSince(started)
            let status = reply.status ?? 0
            XCTAssertTrue(allowed.contains(status) || status == 200, "\(name): \(reply.summary)")
            XCTAssertLessThan(seconds, 15, name)
            table.append("| \(name) | \(body.utf8.count) | \(status) \(reply.errorCode ?? "") | \(String(format: "%.0f ms", seconds * 1000)) |")
        }

        // A maximum-size prompt (about max_prompt_tokens) forced to each pool: answered, and the
        // replica's memory comes back.
        for expert in ["et5", "emamba"] {
            let body = Self.answer(context: Self.ordinaryText(bytes: 4_000), expert: expert, maxTokens: 8)
            let started = Date()
            let reply = try RawHTTP.exchange(port: port, post("/v1/answer", body, token: Self.token), timeout: 20)
            let seconds = Date().timeIntervalSince(started)
            XCTAssertTrue([200, 422].contains(reply.status ?? 0), "max-size prompt to \(expert): \(reply.summary)")
            let promptTokens = (try? JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as? [String: Any])
                .flatMap { ($0["usage"] as? [String: Any])?["prompt_tokens"] as? Int }
            table.append("| ~max-size prompt forced to \(expert) (\(promptTokens.map { "\($0) tokens" } ?? "?")) | \(body.utf8.count) | "
                         + "\(reply.status ?? 0) \(reply.errorCode ?? "") | \(String(format: "%.0f ms", seconds * 1000)) |")
        }
        Thread.sleep(forTimeInterval: 1.5)
        let et5After = harness.residentMiB("et5-1") ?? 0
        stop.set()
        client.join(timeout: 35); sampler.join(timeout: 5)

        // Every ordinary request succeeded, quickly enough.
        let served = ordinary.values
        XCTAssertGreaterThan(served.count, 5, "the ordinary client hardly ran")
        let failures = served.filter { $0.0 != 200 }
        XCTAssertEqual(failures.count, 0, "ordinary requests failed: \(failures)\n\(harness.allLogs())")
        let worst = served.map(\.1).max() ?? 0
        XCTAssertLessThan(worst, 3, "an ordinary request took \(worst) s")
        // No process restarted or died, no replica was declared dead or reconnected.
        for (name, pid) in zip(nodes, pids) {
            XCTAssertEqual(harness.processes[name]?.processIdentifier, pid, name)
            XCTAssertTrue(harness.processes[name]?.isRunning ?? false, "\(name) died\n\(harness.log(name).suffix(2000))")
        }
        let routerLog = harness.log("router")
        for id in ["emamba-1", "emamba-2", "et5-1"] {
            XCTAssertEqual(routerLog.components(separatedBy: "replica=\(id)").count - 1, 1,
                           "\(id) registered more than once (declared dead?)\n\(routerLog.suffix(3000))")
            XCTAssertFalse(harness.log(id).contains("reconnecting"), "\(id) lost the router\n\(harness.log(id).suffix(2000))")
        }
        XCTAssertTrue(RawHTTP.waitReady(port: port, emamba: 2, et5: 1, timeout: 5))
        // ET5's memory returns to within 20 % of its steady state after the long prompts.
        XCTAssertLessThan(et5After, et5Steady * 1.2, "ET5 RSS \(et5Steady) MiB before, \(et5After) MiB after")

        print("HostileClientTests: \(served.count) ordinary requests, 0 failed, worst \(String(format: "%.0f ms", worst * 1000)); "
              + "ET5 RSS \(String(format: "%.1f", et5Steady)) MiB before, \(String(format: "%.1f", et5After)) MiB after")
        print("HostileClientTests peak RSS (MiB): "
              + nodes.map { "\($0) \(String(format: "%.1f", peaks.peaks[$0] ?? 0))" }.joined(separator: ", "))
        print("| hostile request | body bytes | status | time |\n|---|---|---|---|\n" + table.joined(separator: "\n"))
    }

    /// A prefill longer than the router's liveness window (ET5's encoder on a maximum-size
    /// prompt, ~0.6 s here, against 3 × 100 ms heartbeats) does not get the replica declared
    /// dead: its heartbeat thread speaks for it while it computes.
    func testAReplicaPrefillingAMaximumSizePromptStaysAlive() throws {
        let harness = try ClusterHarness()
        defer { harness.stopAll() }
        try harness.start("router", ["router", "--frontend", harness.frontend, "--backend", harness.backend,
                                     "--model", harness.model.path, "--gate", "alternate", "--heartbeat-ms", "100"])
        // Experts that start before the router listens hear nothing for 300 ms and reconnect:
        // right at start, and not what this test is about.
        let listening = Date().addingTimeInterval(20)
        while !harness.log("router").contains("router listening"), Date() < listening { Thread.sleep(forTimeInterval: 0.02) }
        for (kind, id) in [("emamba", "emamba-1"), ("et5", "et5-1")] {
            try harness.start(id, ["expert", "--kind", kind, "--model", harness.model.path, "--router", harness.backend,
                                   "--replica-id", id, "--heartbeat-ms", "100"])
        }
        let port = ClusterHarness.freePort()
        try harness.start("gateway", ["gateway", "--listen", "127.0.0.1:\(port)", "--router", harness.frontend])
        XCTAssertTrue(RawHTTP.waitReady(port: port, emamba: 1, et5: 1), harness.allLogs())
        func registrations(_ id: String) -> Int { harness.log("router").components(separatedBy: "replica=\(id)").count - 1 }
        func reconnects(_ id: String) -> Int { harness.log(id).components(separatedBy: "reconnecting").count - 1 }
        let before = ["emamba-1", "et5-1"].map { (registrations($0), reconnects($0)) }
        var times: [String] = []
        for expert in ["et5", "emamba", "et5"] {
            let started = Date()
            let reply = try RawHTTP.exchange(port: port, post("/v1/answer", Self.answer(context: Self.ordinaryText(bytes: 4_000),
                                                                                        expert: expert, maxTokens: 4)))
            XCTAssertEqual(reply.status, 200, "\(expert): \(reply.summary)\n\(harness.allLogs())")
            times.append("\(expert) \(String(format: "%.0f ms", Date().timeIntervalSince(started) * 1000))")
        }
        for (id, (registered, reconnected)) in zip(["emamba-1", "et5-1"], before) {
            XCTAssertEqual(registrations(id), registered, "\(id) was declared dead while it computed\n\(harness.log("router").suffix(3000))")
            XCTAssertEqual(reconnects(id), reconnected, "\(id) lost the router while it computed\n\(harness.log(id))")
        }
        print("HostileClientTests: maximum-size prompts beside 100 ms heartbeats (300 ms liveness): " + times.joined(separator: ", "))
    }

    /// Answers in flight when the gateway dies: one replica per pool serves them one at a time,
    /// so most are still queued when the router gives up on the gateway.
    static let orphans = 5

    /// A gateway killed with long answers in flight leaves no work behind: the router stops
    /// generating them within a few heartbeats and the experts drop their sequences.
    func testAGatewayKilledMidAnswerLeavesNoWorkBehind() throws {
        let harness = try ClusterHarness()
        defer { harness.stopAll() }
        try harness.startRouter(gate: "alternate", spanTokens: 4, extra: ["--metrics", "127.0.0.1:0"])
        // One sequence at a time per replica: three long answers take longer than the router's
        // three seconds of patience with a silent gateway.
        try harness.startExpert("emamba", id: "emamba-1", extra: ["--metrics", "127.0.0.1:0", "--capacity", "1"])
        try harness.startExpert("et5", id: "et5-1", extra: ["--metrics", "127.0.0.1:0", "--capacity", "1"])
        let port = ClusterHarness.freePort()
        try harness.start("gateway", ["gateway", "--listen", "127.0.0.1:\(port)", "--router", harness.frontend,
                                      "--max-tokens", "1024", "--deadline-ms", "120000"])
        XCTAssertTrue(RawHTTP.waitReady(port: port, emamba: 1, et5: 1), harness.allLogs())
        var connections: [RawConnection] = []
        // ET5 over a long passage decodes slowest (cross-attention over ~1,700 tokens per step).
        var body = Self.answer(context: Self.ordinaryText(bytes: 4_000), expert: "et5", maxTokens: 1024)
        body.removeLast()
        body += #","stream":true}"#
        for _ in 0..<Self.orphans {
            let c = try RawConnection(port: port)
            c.send(post("/v1/answer", body))
            connections.append(c)
        }
        func active() throws -> Double {
            ClusterHarness.sample(try harness.scrapeMetrics("router"), "mambaformer_router_active_requests") ?? -1
        }
        let deadline = Date().addingTimeInterval(10)
        while try active() < Double(Self.orphans), Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        XCTAssertEqual(try active(), Double(Self.orphans), "the answers never started")
        harness.signal("gateway", SIGKILL)
        let killed = Date()
        while try active() > 0, Date().timeIntervalSince(killed) < 10 { Thread.sleep(forTimeInterval: 0.1) }
        let seconds = Date().timeIntervalSince(killed)
        XCTAssertEqual(try active(), 0, "the router kept generating for a gone gateway")
        XCTAssertLessThan(seconds, 6)
        let routerText = try harness.scrapeMetrics("router")
        // Each answer was either finished before the router gave up on the gateway, or cancelled.
        let orphans = ClusterHarness.sample(routerText, "mambaformer_router_orphans_cancelled_total") ?? 0
        let done = ClusterHarness.sample(routerText, "mambaformer_router_requests_done_total") ?? 0
        XCTAssertGreaterThanOrEqual(orphans, 1, routerText)
        XCTAssertEqual(orphans + done, Double(Self.orphans), routerText)
        Thread.sleep(forTimeInterval: 0.5)
        for id in ["emamba-1", "et5-1"] {
            let text = try harness.scrapeMetrics(id)
            let sequences = text.split(separator: "\n").filter { $0.hasPrefix("mambaformer_expert_active_sequences") }
            XCTAssertTrue(sequences.allSatisfy { $0.hasSuffix(" 0") || $0.hasSuffix(" 0.0") }, "\(id): \(sequences)")
        }
        connections.forEach { $0.close() }
        print("HostileClientTests: a gateway killed with \(Self.orphans) answers in flight; the router dropped \(Int(orphans)) of them \(String(format: "%.1f s", seconds)) later")
    }

    /// A router that lets a long prompt through (misconfigured: a higher limit) still cannot
    /// make an expert read it: the expert refuses the span itself, and the client gets 422.
    func testAnExpertEnforcesItsOwnPromptLimit() throws {
        let harness = try ClusterHarness()
        defer { harness.stopAll() }
        try harness.startRouter(gate: "alternate", spanTokens: 4, environment: ["MAMBAFORMER_LIMITS_MAX_PROMPT_TOKENS": "100000"])
        let small = ["MAMBAFORMER_LIMITS_MAX_PROMPT_TOKENS": "64"]
        try harness.startExpert("emamba", id: "emamba-1", environment: small)
        try harness.startExpert("et5", id: "et5-1", environment: small)
        let port = ClusterHarness.freePort()
        try harness.start("gateway", ["gateway", "--listen", "127.0.0.1:\(port)", "--router", harness.frontend])
        XCTAssertTrue(RawHTTP.waitReady(port: port, emamba: 1, et5: 1), harness.allLogs())
        for expert in ["emamba", "et5"] {
            let body = Self.answer(context: Self.ordinaryText(bytes: 2_000), expert: expert)
            let reply = try RawHTTP.exchange(port: port, post("/v1/answer", body))
            XCTAssertEqual(reply.status, 422, "\(expert): \(reply.summary)")
            XCTAssertEqual(reply.errorCode, "prompt_too_long", reply.summary)
            XCTAssertTrue(reply.body.contains("the limit is 64"), reply.summary)
        }
        // Not retried on the other replicas: each expert saw its span once.
        let spans = harness.log("emamba-1").components(separatedBy: "span failed").count - 1
            + harness.log("et5-1").components(separatedBy: "span failed").count - 1
        XCTAssertEqual(spans, 2, harness.allLogs())
        let ok = try RawHTTP.exchange(port: port, post("/v1/answer", #"{"question":"What is a molar?","max_tokens":4}"#))
        XCTAssertEqual(ok.status, 200, ok.summary)
    }
}

private final class StopBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    func set() { lock.lock(); value = true; lock.unlock() }
}

private final class Results: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [(Int, Double)] = []
    private var maxima: [String: Double] = [:]
    func add(_ item: (Int, Double)) { lock.lock(); items.append(item); lock.unlock() }
    var values: [(Int, Double)] { lock.lock(); defer { lock.unlock() }; return items }
    func peak(_ name: String, _ value: Double) { lock.lock(); maxima[name] = max(maxima[name] ?? 0, value); lock.unlock() }
    var peaks: [String: Double] { lock.lock(); defer { lock.unlock() }; return maxima }
}

private extension Thread {
    func join(timeout: Double) {
        let deadline = Date().addingTimeInterval(timeout)
        while !isFinished, Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
    }
}
