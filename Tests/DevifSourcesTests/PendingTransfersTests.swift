@testable import DevifUSB
import XCTest

/// A device's pending transfers: O(1) add and remove through each box's own
/// index, whatever the order of completions.
final class PendingTransfersTests: XCTestCase {
    private func boxes(_ n: Int) throws -> [TransferBox] {
        let transport = FakeTransport()
        return try (0..<n).map { _ in try TransferBox(capacity: 8, transport: transport) }
    }

    func testRemovalsInAnyOrderKeepTheRestAndTheirIndexes() throws {
        let all = try boxes(8)
        var pending = PendingTransfers()
        for b in all { pending.insert(b) }
        XCTAssertEqual(pending.count, 8)
        // Out of order, the first and the last included.
        for i in [3, 0, 7, 5] {
            pending.remove(all[i])
            XCTAssertEqual(all[i].pendingIndex, -1)
        }
        let left = Set(pending.boxes.map(ObjectIdentifier.init))
        XCTAssertEqual(left, Set([1, 2, 4, 6].map { ObjectIdentifier(all[$0]) }))
        for (i, b) in pending.boxes.enumerated() { XCTAssertEqual(b.pendingIndex, i, "each box knows its place") }
        for i in [6, 1, 4, 2] { pending.remove(all[i]) }
        XCTAssertTrue(pending.isEmpty)
    }

    func testRemovingWhatIsNotThereChangesNothing() throws {
        let all = try boxes(3)
        var pending = PendingTransfers()
        pending.insert(all[0])
        pending.insert(all[1])
        pending.remove(all[2])          // never added
        pending.remove(all[1])
        pending.remove(all[1])          // twice
        XCTAssertEqual(pending.boxes.map(ObjectIdentifier.init), [ObjectIdentifier(all[0])])
        // A box pending on another device has an index that is not this set's.
        var other = PendingTransfers()
        other.insert(all[2])
        other.insert(all[1])
        pending.remove(all[1])          // index 1 here is past the end
        XCTAssertEqual(pending.count, 1)
        XCTAssertEqual(other.count, 2)
        // A re-added box gets a new place.
        other.remove(all[1])
        pending.insert(all[1])
        XCTAssertEqual(all[1].pendingIndex, 1)
        XCTAssertEqual(pending.count, 2)
    }
}
