import XCTest
import Wire
@testable import Gateway

final class SpanMergerTests: XCTestCase {
    private func span(_ i: UInt32, _ text: String, id: String = "r1") -> SpanResult {
        SpanResult(requestId: id, spanIndex: i, text: text)
    }
    private func texts(_ spans: [SpanResult]) -> [String] { spans.map(\.text) }

    func testInOrderSpansAreReleasedAtOnce() {
        var m = SpanMerger(requestId: "r1")
        XCTAssertEqual(texts(m.accept(span(0, "a"))), ["a"])
        XCTAssertEqual(texts(m.accept(span(1, "b"))), ["b"])
        XCTAssertEqual(m.text, "ab")
        XCTAssertNil(m.missingIndex)
        XCTAssertNil(m.gapSince)
    }

    func testOutOfOrderSpansWaitForTheMissingOne() {
        var m = SpanMerger(requestId: "r1")
        XCTAssertEqual(texts(m.accept(span(2, "c"))), [])
        XCTAssertEqual(texts(m.accept(span(1, "b"))), [])
        XCTAssertEqual(m.missingIndex, 0)
        XCTAssertEqual(m.waitingIndices, [1, 2])
        XCTAssertEqual(texts(m.accept(span(0, "a"))), ["a", "b", "c"])
        XCTAssertEqual(m.text, "abc")
        XCTAssertNil(m.missingIndex)
    }

    func testDuplicatesAreDroppedFirstCopyWins() {
        var m = SpanMerger(requestId: "r1")
        _ = m.accept(span(0, "a"))
        XCTAssertEqual(texts(m.accept(span(0, "A (retry)"))), [])       // already released
        _ = m.accept(span(2, "c"))
        XCTAssertEqual(texts(m.accept(span(2, "C (retry)"))), [])       // already pending
        XCTAssertEqual(texts(m.accept(span(1, "b"))), ["b", "c"])
        XCTAssertEqual(m.text, "abc")
        XCTAssertEqual(m.duplicatesDropped, 2)
    }

    func testSpansOfAnotherRequestAreIgnored() {
        var m = SpanMerger(requestId: "r1")
        XCTAssertEqual(texts(m.accept(span(0, "other", id: "r2"))), [])
        XCTAssertEqual(m.foreignDropped, 1)
        XCTAssertEqual(m.nextIndex, 0)
        XCTAssertEqual(texts(m.accept(span(0, "mine"))), ["mine"])
    }

    func testGapExpiresOnlyAfterTheTimeout() {
        var m = SpanMerger(requestId: "r1")
        let t0 = ContinuousClock.now
        _ = m.accept(span(0, "a"), now: t0)
        _ = m.accept(span(2, "c"), now: t0 + .milliseconds(10))
        XCTAssertNil(m.expiredGap(now: t0 + .milliseconds(500), timeout: .seconds(1)))
        let gap = m.expiredGap(now: t0 + .milliseconds(1100), timeout: .seconds(1))
        XCTAssertEqual(gap?.missing, 1)
        XCTAssertEqual(gap?.waiting, [2])
        XCTAssertEqual(gap?.reason, .timedOut(waitedMs: 1090))
        XCTAssertTrue(gap?.description.contains("span 1") ?? false)
    }

    func testGapClockRestartsWhenTheGapMoves() {
        var m = SpanMerger(requestId: "r1")
        let t0 = ContinuousClock.now
        _ = m.accept(span(1, "b"), now: t0)
        _ = m.accept(span(3, "d"), now: t0 + .milliseconds(100))        // same gap (0 missing): clock kept
        XCTAssertEqual(m.gapSince, t0)
        _ = m.accept(span(0, "a"), now: t0 + .milliseconds(900))        // 0,1 released; now 2 is missing
        XCTAssertEqual(m.missingIndex, 2)
        XCTAssertEqual(m.gapSince, t0 + .milliseconds(900))
        XCTAssertNil(m.expiredGap(now: t0 + .milliseconds(1500), timeout: .seconds(1)))
        _ = m.accept(span(2, "c"), now: t0 + .milliseconds(1600))
        XCTAssertNil(m.gapSince)
        XCTAssertEqual(m.text, "abcd")
    }

    func testCompletionWithAMissingSpanIsAGapNotATruncatedAnswer() {
        var m = SpanMerger(requestId: "r1")
        _ = m.accept(span(0, "a"))
        _ = m.accept(span(2, "c"))
        XCTAssertEqual(m.gapAtCompletion(expectedSpans: 3)?.missing, 1)
        var n = SpanMerger(requestId: "r1")
        _ = n.accept(span(0, "a"))
        XCTAssertEqual(n.gapAtCompletion(expectedSpans: 2)?.reason, .doneWithoutIt)   // count says 2, got 1
        XCTAssertNil(n.gapAtCompletion(expectedSpans: 1))
        XCTAssertNil(n.gapAtCompletion(expectedSpans: 0))                                // count not reported
    }
}
