import XCTest
@testable import Gate
@testable import GateTraining

final class EvaluationTests: XCTestCase {
    func testSquadNormalisationAndMetrics() {
        XCTAssertEqual(AnswerMetrics.normalizedTokens("The  Inflammation, of an (acute) gum!"), ["inflammation", "of", "acute", "gum"])
        XCTAssertEqual(AnswerMetrics.exactMatch("the Gingiva.", "gingiva"), 1)
        XCTAssertEqual(AnswerMetrics.exactMatch("gingiva of", "gingiva"), 0)
        // Prediction "inflammation of gums", reference "inflammation of the gums": 3 common / 3 and 3.
        XCTAssertEqual(AnswerMetrics.tokenF1("inflammation of gums", "inflammation of the gums"), 1)
        // 1 common token of 2 predicted and 4 reference: P ½, R ¼ → F1 ⅓.
        XCTAssertEqual(AnswerMetrics.tokenF1("gums bleed", "inflammation of the gums swelling"), 1.0 / 3, accuracy: 1e-6)
        XCTAssertEqual(AnswerMetrics.tokenF1("", "x"), 0)
        XCTAssertEqual(AnswerMetrics.tokenF1("", ""), 1)
        // LCS("a b c d", "a c b d") = 3 (a c d or a b d): P = R = ¾.
        XCTAssertEqual(AnswerMetrics.rougeL("w x y z", "w y x z"), 0.75, accuracy: 1e-6)
        XCTAssertEqual(AnswerMetrics.rougeL("z y x w", "w x y z"), 0.25, accuracy: 1e-6)
        XCTAssertEqual(AnswerMetrics.yesNoMaybe("Yes, it does", "yes."), 1)
        XCTAssertEqual(AnswerMetrics.yesNoMaybe("no", "maybe"), 0)
        XCTAssertNil(AnswerMetrics.yesNoMaybe("yes", "gingiva"))
    }

    func testParetoFrontierAndBaselineLine() {
        let points: [(cost: Float, quality: Float)] = [(10, 0.2), (50, 0.5), (30, 0.3), (30, 0.45), (60, 0.5), (5, 0.1)]
        XCTAssertEqual(ParetoFrontier.optimal(points), [0, 1, 3, 5])
        XCTAssertEqual(ParetoFrontier.line(from: (10, 0.2), to: (50, 0.6), at: 30)!, 0.4, accuracy: 1e-6)
        XCTAssertNil(ParetoFrontier.line(from: (10, 0.2), to: (10, 0.6), at: 30))
    }
}
