// The bundled traffic generator: open- and closed-loop load against a gateway, HDR latency
// histograms, JSON and HTML reports.
//
// In-process use (benchmarks, the reliability suite):
//
//     var plan = LoadPlan(target: URL(string: "http://127.0.0.1:8080")!, mode: .closed(concurrency: 4))
//     plan.maxRequests = 30
//     let report = try await LoadRunner(plan: plan, workload: try Workload(jsonl: url)).run()
//     try ReportWriter.write(report, to: folder)      // report.json + report.html
//
// The parts, top-down: `LoadPlan` (what to send, how fast, for how long) → `LoadRunner` (the
// open/closed loops) → `AnswerExchange` (one HTTP/1.1 request over SwiftNIO, streaming or not)
// → `LoadStats` (HDR histograms, counts, a per-second series) → `LoadReport` (Codable) →
// `ReportWriter` / `HTMLReport` / `CompareTable`.
