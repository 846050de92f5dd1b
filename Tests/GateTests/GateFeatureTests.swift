import XCTest
@testable import Gate
@testable import GateTraining
import Wire

final class GateFeatureTests: XCTestCase {
    let spec: FeatureSpec = {
        var s = FeatureSpec()
        s.embeddingDims = 3
        s.window = 2
        s.positionScale = 4
        s.answerScale = 2
        s.promptLengthScale = 15
        s.entropyScale = 4
        return s
    }()
    let statistics = VocabularyStatistics(rarity: [0, 0.25, 0.5, 1], embeddingNorm: [-1, 0, 1, 2])

    func feature(_ seq: GateSequence, _ t: Int, _ name: String) -> Float {
        seq.numeric[t * spec.numericCount + FeatureSpec.numericNames.firstIndex(of: name)!]
    }

    func testFeaturesOfAHandMadeSequence() {
        let prompt = GateText(ids: [0, 1, 2], offsets: [0..<1, 1..<2, 2..<3], lexicon: [false, true, true])
        let answer = GateText(ids: [3, 1], offsets: [0..<1, 1..<2], lexicon: [false, false])
        let seq = GateFeaturizer.sequence(prompt: prompt, answer: answer,
                                          confidence: [TokenConfidence(probability: 0.8, entropy: 2), nil],
                                          statistics: statistics, spec: spec)
        XCTAssertEqual(seq.ids, [0, 1, 2, 3, 1])
        XCTAssertEqual(seq.promptCount, 3)
        XCTAssertEqual(seq.numeric.count, 5 * spec.numericCount)
        XCTAssertEqual((0..<5).map { feature(seq, $0, "is_answer") }, [0, 0, 0, 1, 1])
        // Prompt positions / 4, answer positions / 2.
        XCTAssertEqual((0..<5).map { feature(seq, $0, "position") }, [0, 0.25, 0.5, 0, 0.5])
        // log1p(3) / log1p(15) = ln 4 / ln 16 = 0.5 for every token.
        for t in 0..<5 { XCTAssertEqual(feature(seq, t, "prompt_length"), 0.5, accuracy: 1e-6) }
        XCTAssertEqual((0..<5).map { feature(seq, $0, "rarity") }, [0, 0.25, 0.5, 1, 0.25])
        // Window of 2 (the token included; the first token averages over itself).
        let windowRarity = (0..<5).map { feature(seq, $0, "window_rarity") }
        for (a, b) in zip(windowRarity, [0, 0.125, 0.375, 0.75, 0.625] as [Float]) { XCTAssertEqual(a, b, accuracy: 1e-6) }
        XCTAssertEqual((0..<5).map { feature(seq, $0, "embedding_norm") }, [-1, 0, 1, 2, 0])
        XCTAssertEqual((0..<5).map { feature(seq, $0, "lexicon") }, [0, 1, 1, 0, 0])
        XCTAssertEqual((0..<5).map { feature(seq, $0, "window_lexicon_hits") }, [0, 0.5, 1, 0.5, 0])
        XCTAssertEqual((0..<5).map { feature(seq, $0, "confidence") }, [0, 0, 0, 0.8, 0])
        XCTAssertEqual((0..<5).map { feature(seq, $0, "entropy") }, [0, 0, 0, 0.5, 0])
        XCTAssertEqual((0..<5).map { feature(seq, $0, "has_confidence") }, [0, 0, 0, 1, 0])
    }

    func testOutOfVocabularyIdsAreTreatedAsRareNotACrash() {
        let prompt = GateText(ids: [99, -1], offsets: [0..<1, 1..<2], lexicon: [false, false])
        let seq = GateFeaturizer.sequence(prompt: prompt, answer: .empty, confidence: [], statistics: statistics, spec: spec)
        XCTAssertEqual(feature(seq, 0, "rarity"), 1)
        XCTAssertEqual(feature(seq, 1, "embedding_norm"), 0)
    }

    func testRarityFromCountsAndStandardisedNorms() {
        let r = VocabularyStatistics.rarity(counts: [0, 9, 99])
        XCTAssertEqual(r[0], 1, accuracy: 1e-6, "an unseen token is maximally rare")
        XCTAssertLessThan(r[2], r[1])
        XCTAssertGreaterThanOrEqual(r[2], 0)
        let table: [Float] = [3, 4, 0, 0, 6, 8]  // norms 5, 0, 10
        let norms = table.withUnsafeBufferPointer { VocabularyStatistics.standardisedNorms($0.baseAddress!, rows: 3, dims: 2) }
        XCTAssertEqual(norms[0], 0, accuracy: 1e-5)
        XCTAssertEqual(norms[1], -norms[2], accuracy: 1e-5)
        XCTAssertEqual(norms[2], 1.2247449, accuracy: 1e-4)
    }

    func testWordsAndLexiconFlagsUseByteOffsets() {
        let text = "Acute gingivitis, é gum"
        let words = Words.split(text)
        XCTAssertEqual(words.map(\.text), ["Acute", "gingivitis", "é", "gum"])
        XCTAssertEqual(words[2].bytes, 18..<20, "é is two UTF-8 bytes")
        XCTAssertEqual(words[3].bytes, 21..<24)
        let lexicon = Lexicon(words: ["GINGIVITIS", "gum"])
        XCTAssertTrue(lexicon.contains("Gingivitis"))
        // Tokens: "Acute", " ging" (trimmed to 6..<10), "ivitis", ",", " é", " gum".
        let offsets = [0..<5, 6..<10, 10..<16, 16..<17, 18..<20, 21..<24]
        XCTAssertEqual(GateFeaturizer.lexiconFlags(text: text, offsets: offsets, lexicon: lexicon),
                       [false, true, true, false, false, true])
        let built = Lexicon.build(from: ["Periodontitis and gingivitis affect the tooth", "a big cat"])
        XCTAssertEqual(built.words, ["periodontitis", "gingivitis", "tooth"])
    }

    func testAlignmentSplitsByOverlapAndKeepsTotals() {
        // Answer text: "gingivitis pain"; gate tokens "ging" "ivitis" "pain";
        // expert tokens "gingivitis" (spans two gate tokens), "▁" (empty range at 10),
        // "pa" and "in" (two expert tokens inside one gate token).
        let gate = [0..<4, 4..<10, 11..<15]
        let expert = [0..<10, 10..<10, 11..<13, 13..<15]
        let values: [Float] = [-2, -0.5, -1, -0.25]
        let aligned = OffsetAlignment.align(values: values, expertOffsets: expert, gateOffsets: gate)
        XCTAssertEqual(aligned.count, 3)
        XCTAssertEqual(aligned[0], -0.8, accuracy: 1e-6)   // 4/10 of −2
        XCTAssertEqual(aligned[1], -1.2, accuracy: 1e-6)   // 6/10 of −2
        XCTAssertEqual(aligned[2], -1.75, accuracy: 1e-6)  // the empty "▁" goes to the next gate token, + pa + in
        XCTAssertEqual(aligned.reduce(0, +), values.reduce(0, +), accuracy: 1e-6)
        // A trailing expert token past every gate token lands on the last one.
        let tail = OffsetAlignment.align(values: [1], expertOffsets: [20..<21], gateOffsets: gate)
        XCTAssertEqual(tail, [0, 0, 1])
        XCTAssertEqual(OffsetAlignment.align(values: [1], expertOffsets: [0..<1], gateOffsets: []), [])
    }

    func testDistributionOfLogits() {
        let d = TeacherForcer.distribution([0, 0, Float(log(2.0))], token: 2)
        XCTAssertEqual(d.logProbability, Float(log(0.5)), accuracy: 1e-6)
        // p = (¼, ¼, ½): entropy = 1.5 ln 2.
        XCTAssertEqual(d.entropy, Float(1.5 * log(2.0)), accuracy: 1e-5)
        XCTAssertEqual(TeacherForcer.distribution([1, 2], token: 5).logProbability, -.infinity)
    }
}
