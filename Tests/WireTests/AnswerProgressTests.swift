import Foundation
import Wire
import XCTest

/// The answer between spans, shared by the router and in-process generation.
final class AnswerProgressTests: XCTestCase {
    func testSpansAccumulateAndTheNextSpanCarriesTheAnswerSoFar() {
        var progress = AnswerProgress()
        let request = AnswerRequest(requestId: "r", question: "q", maxNewTokens: 10)
        let first = progress.nextSpan(of: request, prompt: "question: q", spanTokens: 4)
        XCTAssertEqual(first.spanIndex, 0)
        XCTAssertEqual(first.maxNewTokens, 4)
        XCTAssertEqual(first.answerSoFar, "")
        progress.append(SpanResult(requestId: "r", spanIndex: 0, pieces: [
            Piece(text: "Rin", tokenId: 1, logprob: log(0.5), entropy: 1),
            Piece(text: "se", tokenId: 2, logprob: log(0.25), entropy: 3)], text: "Rinse", finish: .none), pool: .et5)
        XCTAssertEqual(progress.text, "Rinse")
        XCTAssertEqual(progress.tokens, 2)
        XCTAssertEqual(progress.previousPool, .et5)
        XCTAssertEqual(progress.previousConfidence!, 0.375, accuracy: 1e-6)
        XCTAssertEqual(progress.previousEntropy!, 2, accuracy: 1e-6)
        progress.append(SpanResult(requestId: "r", spanIndex: 1, pieces: (0..<7).map { Piece(text: "x", tokenId: UInt32($0)) },
                                   text: "xxxxxxx", finish: .none), pool: .emamba)
        let third = progress.nextSpan(of: request, prompt: "question: q", spanTokens: 4)
        XCTAssertEqual(third.spanIndex, 2)
        XCTAssertEqual(third.maxNewTokens, 1, "only what is left of max_new_tokens")
        XCTAssertEqual(third.answerTokensBefore, 9)
        XCTAssertEqual(progress.tokensByPool, [.et5: 2, .emamba: 7])
        // An empty span leaves no confidence to read.
        progress.append(SpanResult(requestId: "r", spanIndex: 2, pieces: [], text: "", finish: .none), pool: .et5)
        XCTAssertNil(progress.previousConfidence)
    }
}
