@testable import Devif
import DevifCore
import Foundation
import Testing

/// The device-free parts of handles: opening errors by link, and the order
/// of removal notices. (The I/O itself is tested in the lab: IOTests.swift.)
@Suite("Handles")
struct HandleTests {
    @Test("opening names what is wrong: unknown link, absent instance, wrong kind, missing node")
    func openErrors() async throws {
        let usb = FakeSource("usb")
        let h = try Harness([usb])
        let link = DeviceManagerTests.serialLink
        #expect(throws: HandleError.unknownLink) { _ = try h.manager.open("usb#vid_ffff&pid_0001#NOPE#\(usbDeviceGUIDText)") }
        let snapshot = usbSnapshot()
        usb.arrive(snapshot)
        #expect(await h.barrier(usb))
        #expect(throws: HandleError.wrongKind) { _ = try h.manager.openHID(link) }
        // The fake's node does not exist: opening it is a removal (the node is gone).
        do {
            _ = try h.manager.openUSB(link)
            Issue.record("opening a missing node succeeded")
        } catch {
            #expect(error == .deviceRemoved || error == .permissionDenied, "\(error)")
            #expect(error.description.contains(link), "the message names the link: \(error)")
        }
        usb.remove(snapshot)
        #expect(await h.barrier(usb))
        do {
            _ = try h.manager.openUSB(link)
            Issue.record("opening an absent instance succeeded")
        } catch {
            #expect(error == .notPresent)
            #expect(error.description.contains("not plugged in"), "\(error)")
        }
        #expect(h.manager.openHandleCount == 0)
    }

    @Test("removal notices: pending, then complete once the calls in progress end; late listeners get both")
    func removalNoticeOrder() async throws {
        let tracker = RemovalTracker()
        let early = tracker.notices()
        tracker.begin()  // a call in progress
        #expect(tracker.removed())
        #expect(!tracker.removed(), "a second removal is ignored")
        tracker.settle()  // still in progress: no complete yet
        let middle = tracker.notices()
        tracker.end()  // the call returns: complete
        let late = tracker.notices()
        for stream in [early, middle, late] {
            var got: [RemovalNotice] = []
            for await n in stream { got.append(n) }
            #expect(got == [.pending, .complete])
        }
    }

    @Test("closing ends the notice streams of a device that never left")
    func closeEndsNotices() async {
        let tracker = RemovalTracker()
        let stream = tracker.notices()
        tracker.finish()
        var got: [RemovalNotice] = []
        for await n in stream { got.append(n) }
        #expect(got.isEmpty)
    }

    @Test("a notice stream asked for after close ends at once (it was never finished: kept as long as the handle, and a loop over it hung)")
    func noticesAfterClose() async {
        // Closed while present, and closed while a removal is still pending.
        let present = RemovalTracker()
        present.finish()
        let pending = RemovalTracker()
        pending.begin()
        #expect(pending.removed())
        pending.finish()
        for (tracker, expected) in [(present, [RemovalNotice]()), (pending, [.pending])] {
            let stream = tracker.notices()
            let got = await withTaskGroup(of: [RemovalNotice]?.self) { group in
                group.addTask { var got: [RemovalNotice] = []; for await n in stream { got.append(n) }; return got }
                group.addTask { try? await Task.sleep(for: .seconds(5)); return nil }
                let first = await group.next()!
                group.cancelAll()
                return first
            }
            #expect(got == expected)
        }
    }

    @Test("backend errors map to handle errors that keep the link and the detail")
    func errorMapping() {
        let e = HandleError.removed("usb#x#y#{z}", "bulk IN 0x81")
        #expect(e == .deviceRemoved)
        #expect(e != .closed)
        #expect(e.description.hasPrefix("usb#x#y#{z}: the device was removed"))
        #expect(e.description.contains("bulk IN 0x81"))
    }
}
