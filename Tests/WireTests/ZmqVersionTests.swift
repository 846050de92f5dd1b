import XCTest
@testable import Wire

final class ZmqVersionTests: XCTestCase {
    func testLinkedLibzmqIsVersion4() {
        let v = zmqLibraryVersion()
        XCTAssertTrue(v.hasPrefix("4."), "expected libzmq 4.x, got \(v)")
    }
}
