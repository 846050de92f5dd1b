import XCTest
@testable import Wire

/// Strings a peer controls are made safe for a log line before they reach one.
final class LoggableTests: XCTestCase {
    func testControlCharactersAreEscapedAndLengthBounded() {
        XCTAssertEqual(loggable("emamba-1"), "emamba-1")
        // A forged second log line and an ANSI colour escape stay on one inert line.
        XCTAssertEqual(loggable("x\n2026-12-06 info router: replica ready\u{1B}[31m"),
                       "x\\u{A}2026-12-06 info router: replica ready\\u{1B}[31m")
        XCTAssertEqual(loggable("é\\"), "\\u{E9}\\u{5C}")
        XCTAssertEqual(loggable(String(repeating: "a", count: 1000), limit: 8), "aaaaaaaa…")
    }
}
