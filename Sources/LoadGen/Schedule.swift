import Foundation
import Random

/// How fast an open loop sends: a constant rate, steps, or a linear ramp (requests per second
/// as a function of time since the start). After the last step or the end of the ramp the
/// final rate holds until `--requests` or `--duration` ends the run.
public enum RateSchedule: Sendable, Equatable, Codable, CustomStringConvertible {
    case constant(Double)
    /// Each rate held for `stepSeconds`, in order.
    case steps([Double], stepSeconds: Double)
    /// From `from` to `to` requests/s linearly over `seconds`.
    case ramp(from: Double, to: Double, seconds: Double)

    /// Parses `--schedule`: `"step:2,4,8:20s"` (2, then 4, then 8 req/s, 20 s each) or
    /// `"ramp:1-10:60s"` (1 → 10 req/s over 60 s). A bare number is a constant rate.
    public init(parsing text: String) throws {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        func bad(_ why: String) -> LoadGenError {
            .invalidOption(option: "--schedule", value: text,
                           reason: "\(why); expected \"step:2,4,8:20s\", \"ramp:1-10:60s\" or a rate such as \"5\"")
        }
        func seconds(_ s: String) throws -> Double {
            guard let v = parseSeconds(s), v > 0 else { throw bad("\"\(s)\" is not a positive duration") }
            return v
        }
        func rate(_ s: String) throws -> Double {
            guard let v = Double(s.trimmingCharacters(in: .whitespaces)), v.isFinite, v > 0 else {
                throw bad("\"\(s)\" is not a positive rate")
            }
            return v
        }
        if parts.count == 1 {
            self = .constant(try rate(parts[0]))
            return
        }
        guard parts.count == 3 else { throw bad("wrong number of ':' fields") }
        switch parts[0].lowercased() {
        case "step", "steps":
            let rates = try parts[1].split(separator: ",").map { try rate(String($0)) }
            guard !rates.isEmpty else { throw bad("no rates") }
            self = .steps(rates, stepSeconds: try seconds(parts[2]))
        case "ramp":
            let ends = parts[1].split(separator: "-").map(String.init)
            guard ends.count == 2 else { throw bad("a ramp needs FROM-TO") }
            self = .ramp(from: try rate(ends[0]), to: try rate(ends[1]), seconds: try seconds(parts[2]))
        default:
            throw bad("unknown kind \"\(parts[0])\"")
        }
    }

    /// Requests per second at `t` seconds after the start.
    public func rate(at t: Double) -> Double {
        switch self {
        case .constant(let r): return r
        case .steps(let rates, let step):
            let i = min(rates.count - 1, max(0, Int(t / step)))
            return rates[i]
        case .ramp(let from, let to, let seconds):
            let f = min(1, max(0, t / seconds))
            return from + (to - from) * f
        }
    }

    /// The highest rate the schedule reaches (the envelope for thinning).
    public var peakRate: Double {
        switch self {
        case .constant(let r): return r
        case .steps(let rates, _): return rates.max() ?? 0
        case .ramp(let from, let to, _): return max(from, to)
        }
    }

    public var description: String {
        switch self {
        case .constant(let r): return "poisson \(format(r)) req/s"
        case .steps(let rates, let s): return "poisson steps \(rates.map(format).joined(separator: ",")) req/s, \(format(s)) s each"
        case .ramp(let a, let b, let s): return "poisson ramp \(format(a))→\(format(b)) req/s over \(format(s)) s"
        }
    }
}

/// Intended send times (seconds after the start) of a Poisson process whose rate follows a
/// schedule. A non-homogeneous process is drawn by thinning (Lewis & Shedler 1979):
/// candidates at the peak rate, each kept with probability rate(t)/peak; for a constant rate
/// every candidate is kept, i.e. plain exponential inter-arrivals.
public struct PoissonArrivals: Sequence, IteratorProtocol, Sendable {
    public let schedule: RateSchedule
    private var rng: SplitMix64
    private var t = 0.0

    public init(schedule: RateSchedule, seed: UInt64) {
        self.schedule = schedule
        rng = SplitMix64.stream(seed: seed, index: 0, salt: 0xA221_7A15)
    }

    public mutating func next() -> Double? {
        let peak = schedule.peakRate
        guard peak > 0, peak.isFinite else { return nil }
        while true {
            t += rng.exponential(rate: peak)
            if schedule.rate(at: t) >= peak || rng.unit() * peak < schedule.rate(at: t) { return t }
        }
    }
}

/// "20s", "1.5s", "500ms", "2m", or a bare number of seconds.
public func parseSeconds(_ text: String) -> Double? {
    let s = text.trimmingCharacters(in: .whitespaces).lowercased()
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
    for (suffix, scale) in units where s.hasSuffix(suffix) {
        guard let v = Double(s.dropLast(suffix.count)), v.isFinite, v >= 0 else { return nil }
        return v * scale
    }
    guard let v = Double(s), v.isFinite, v >= 0 else { return nil }
    return v
}

func format(_ x: Double) -> String {
    x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : String(format: "%g", x)
}
