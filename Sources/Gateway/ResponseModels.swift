import Foundation
import GatewayClient
import Wire

extension AnswerResponse.TraceEntry {
    init(_ span: SpanResult) {
        self.init(span: Int(span.spanIndex), expert: span.pool.description, replica: span.replicaId,
                  tokens: span.pieces.count, gateScore: rounded(Double(span.gateScore), places: 4),
                  ms: rounded(Double(span.computeUs) / 1000, places: 3))
    }
}

/// Short decimals in JSON (a Float gate score would print 17 digits); non-finite → 0, since
/// JSON cannot carry NaN and a bad score from upstream must not break the response.
func rounded(_ x: Double, places: Int) -> Double {
    guard x.isFinite else { return 0 }
    let scale = pow(10, Double(places))
    return (x * scale).rounded() / scale
}

extension SpanEvent {
    init(_ span: SpanResult, logprobs: Bool = false) {
        let t = AnswerResponse.TraceEntry(span)
        self.init(span: t.span, text: span.text, expert: t.expert, replica: t.replica, tokens: t.tokens,
                  gateScore: t.gateScore, ms: t.ms, logprobs: logprobs ? TokenLogprobEntry.entries(span) : nil)
    }
}

extension TokenLogprobEntry {
    /// A span's tokens. JSON has no -inf: a log-probability below -9999 is given as -9999 (as OpenAI does).
    static func entries(_ span: SpanResult) -> [TokenLogprobEntry] {
        func finite(_ x: Float) -> Double { x.isNaN ? -9999 : max(-9999, Double(x)) }
        return span.pieces.map { piece in
            TokenLogprobEntry(token: piece.text, logprob: finite(piece.logprob), expert: span.pool.description,
                              topLogprobs: piece.top.map { Alternative(token: $0.text, logprob: finite($0.logprob)) })
        }
    }
}

extension ErrorEnvelope {
    init(_ error: GatewayError, requestId: String) {
        self.init(error: Body(code: error.code, message: error.message, requestId: requestId,
                              type: error.type, partial: error.partial))
    }
}

enum JSON {
    /// Compact, sorted keys: stable bytes for tests and caches.
    static func encode<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(value), let s = String(data: data, encoding: .utf8) else {
            // Only non-finite floats can fail here; our values are finite by construction.
            return #"{"error":{"code":"internal_error","message":"response encoding failed","request_id":"","type":"server_error"}}"#
        }
        return s
    }
}
