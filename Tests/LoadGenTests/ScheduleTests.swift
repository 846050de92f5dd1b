@testable import LoadGen
import Random
import XCTest

final class ScheduleTests: XCTestCase {
    func testPoissonMeanAndSpreadOfInterarrivals() {
        var arrivals = PoissonArrivals(schedule: .constant(50), seed: 42)
        var gaps: [Double] = []
        var last = 0.0
        for _ in 0..<20_000 {
            guard let t = arrivals.next() else { return XCTFail("the process ended") }
            XCTAssertGreaterThan(t, last, "arrival times increase")
            gaps.append(t - last)
            last = t
        }
        let mean = gaps.reduce(0, +) / Double(gaps.count)
        let sd = (gaps.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(gaps.count)).squareRoot()
        // Exponential inter-arrivals: mean 1/λ = 20 ms, coefficient of variation 1.
        // With n = 20000 the standard error of the mean is 0.7 %; 3 % is > 4 sigma.
        XCTAssertEqual(mean, 0.02, accuracy: 0.02 * 0.03)
        XCTAssertEqual(sd / mean, 1, accuracy: 0.05)
    }

    func testSameSeedSameArrivalsOtherSeedOther() {
        let a = Array(PoissonArrivals(schedule: .constant(10), seed: 7).prefix(50))
        let b = Array(PoissonArrivals(schedule: .constant(10), seed: 7).prefix(50))
        let c = Array(PoissonArrivals(schedule: .constant(10), seed: 8).prefix(50))
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, c)
    }

    func testStepScheduleFollowsEachRate() throws {
        let schedule = try RateSchedule(parsing: "step:2,8:100s")
        XCTAssertEqual(schedule, .steps([2, 8], stepSeconds: 100))
        let times = Array(PoissonArrivals(schedule: schedule, seed: 3).prefix { $0 < 200 })
        let first = times.filter { $0 < 100 }.count
        let second = times.count - first
        // Expected 200 and 800 (Poisson sd ≈ 14 and 28).
        XCTAssertEqual(Double(first), 200, accuracy: 60)
        XCTAssertEqual(Double(second), 800, accuracy: 120)
    }

    func testRampScheduleRisesLinearly() throws {
        let schedule = try RateSchedule(parsing: "ramp:1-10:60s")
        XCTAssertEqual(schedule.rate(at: 0), 1)
        XCTAssertEqual(schedule.rate(at: 30), 5.5, accuracy: 1e-9)
        XCTAssertEqual(schedule.rate(at: 600), 10, "holds the final rate")
        let times = Array(PoissonArrivals(schedule: schedule, seed: 5).prefix { $0 < 60 })
        // ∫ rate = 60 · 5.5 = 330 arrivals; the second half carries 3/4·... more than the first.
        XCTAssertEqual(Double(times.count), 330, accuracy: 70)
        XCTAssertGreaterThan(times.filter { $0 >= 30 }.count, times.filter { $0 < 30 }.count)
    }

    func testScheduleParsingRejectsNonsense() {
        for bad in ["step::20s", "ramp:1:60s", "ramp:1-10", "step:2,x:10s", "wave:1-2:3s", "-4", "step:2:0s", "0"] {
            XCTAssertThrowsError(try RateSchedule(parsing: bad), bad)
        }
        XCTAssertEqual(try RateSchedule(parsing: "5"), .constant(5))
        XCTAssertEqual(parseSeconds("500ms"), 0.5)
        XCTAssertEqual(parseSeconds("2m"), 120)
        XCTAssertEqual(parseSeconds("1.5"), 1.5)
        XCTAssertNil(parseSeconds("soon"))
    }

    func testValueRangesParseAndSampleWithinBounds() throws {
        let r = try ValueRange(parsing: "8-32", option: "--max-tokens", integer: true, within: 1...1000)
        var rng = SplitMix64(seed: 1)
        let samples = (0..<2000).map { _ in r.sampleInt(using: &rng) }
        XCTAssertEqual(samples.min(), 8)
        XCTAssertEqual(samples.max(), 32)
        XCTAssertEqual(try ValueRange(parsing: "16", option: "x", integer: true, within: 1...100), ValueRange(16))
        XCTAssertThrowsError(try ValueRange(parsing: "32-8", option: "x", integer: true, within: 1...100))
        XCTAssertThrowsError(try ValueRange(parsing: "1.5", option: "x", integer: true, within: 1...100))
        XCTAssertThrowsError(try ValueRange(parsing: "0.2-1.5", option: "x", integer: false, within: 0...1))
        XCTAssertThrowsError(try ValueRange(parsing: "abc", option: "x", integer: false, within: 0...1))
    }
}
