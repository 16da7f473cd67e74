// The HID source's batching of hidapi lookups (PendingNodes): one
// enumeration answers every node waiting at that moment, never one per node;
// the throttle bounds how many a burst costs. Sysfs and hidapi are fakes
// here; the lab checks the real thing with hidapi 0.15.0.
import DevifCore
import CHIDAPI
@testable import DevifHID
import Testing

@Suite struct HIDBatchingTests {
    let t0 = ContinuousClock.now
    let interval = Duration.milliseconds(100)

    func at(_ ms: Int) -> ContinuousClock.Instant { t0 + .milliseconds(ms) }

    func node(_ n: Int) -> HidrawChange {
        HidrawChange(action: .add, syspath: "/sys/devices/virtual/misc/uhid/0005:1209:0B\(n).000\(n)/hidraw/hidraw\(n)",
                     devnode: "/dev/hidraw\(n)")
    }

    /// Sysfs facts of a Bluetooth (uhid) node, which hidapi lists; `bus` 6 is BUS_VIRTUAL, which it does not.
    func facts(_ change: HidrawChange, bus: String = "0005", ready: Bool = true) -> HIDResolver.NodeFacts {
        let n = change.devnode!.dropFirst("/dev/hidraw".count)
        let event = Uevent(action: "", devpath: "", properties: [
            ("HID_ID", "\(bus):00001209:00000B0\(n)"), ("HID_NAME", "sysfs name \(n)"), ("HID_UNIQ", "SER-\(n)"),
        ])
        return HIDResolver.NodeFacts(syspath: change.syspath, devnode: change.devnode, hidEvent: ready ? event : nil,
                                     descriptorBytes: [0x06, 0x00, 0xFF, 0x09, 0x01, 0xA1, 0x01, 0xC0], access: .ok)
    }

    func hidapiEntry(_ n: Int) -> HIDAPIInfo {
        HIDAPIInfo(vendorID: 0x1209, productID: UInt16(0xB00 + n), serialNumber: "SER-\(n)", manufacturer: "",
                   product: "hidapi name \(n)", releaseNumber: 0, usages: [(0xFF00, 1)], interfaceNumber: -1,
                   busType: HID_API_BUS_BLUETOOTH)
    }

    /// hidapi listing nodes `listed`, counting its calls.
    final class FakeHIDAPI {
        var listed: Set<Int>
        var calls = 0
        let entry: (Int) -> HIDAPIInfo
        init(listed: Set<Int>, entry: @escaping (Int) -> HIDAPIInfo) {
            self.listed = listed
            self.entry = entry
        }
        func enumerate() -> [String: HIDAPIInfo] {
            calls += 1
            return Dictionary(uniqueKeysWithValues: listed.map { ("/dev/hidraw\($0)", entry($0)) })
        }
    }

    func pending() -> PendingNodes {
        PendingNodes(resolveTimeout: .seconds(2), retryInterval: .milliseconds(100), enumerationInterval: interval)
    }

    func pass(_ p: inout PendingNodes, at instant: ContinuousClock.Instant, _ api: FakeHIDAPI, consult: Bool = true,
              facts: ((HidrawChange) -> HIDResolver.NodeFacts?)? = nil) -> [PendingNodes.Resolved] {
        p.resolveDue(now: instant, consultHIDAPI: consult, read: facts ?? { self.facts($0) },
                     enumerate: api.enumerate, clock: { instant })
    }

    @Test func eightNodesWaitingTogetherCostOneEnumeration() {
        var p = pending()
        let api = FakeHIDAPI(listed: Set(0..<8), entry: hidapiEntry)
        for n in 0..<8 { p.add(node(n), now: at(0), initial: false) }
        let resolved = pass(&p, at: at(0), api)
        #expect(api.calls == 1)
        #expect(resolved.map(\.syspath) == (0..<8).map { node($0).syspath }, "reported in arrival order")
        #expect(resolved.allSatisfy { $0.answeredByHIDAPI && !$0.timedOut })
        #expect(resolved.map(\.snapshot.product) == (0..<8).map { "hidapi name \($0)" }, "hidapi's strings")
        #expect(p.nextAttempt == nil)
    }

    @Test func aBurstSpreadOverTimeSharesEnumerationsAtMostOnePerInterval() {
        var p = pending()
        let api = FakeHIDAPI(listed: Set(0..<8), entry: hidapiEntry)
        // The first node after a quiet spell is looked up at once.
        p.add(node(0), now: at(0), initial: false)
        #expect(pass(&p, at: at(0), api).count == 1)
        #expect(api.calls == 1)
        // Seven more, 12 ms apart: within the interval, so they wait for its end.
        for n in 1..<8 {
            p.add(node(n), now: at(n * 12), initial: false)
            #expect(pass(&p, at: at(n * 12), api).isEmpty, "node \(n) answered before the interval ended")
        }
        #expect(api.calls == 1)
        #expect(p.nextAttempt == at(100))
        let rest = pass(&p, at: at(100), api)
        #expect(api.calls == 2, "8 nodes over 84 ms: one enumeration at the first, one for the other 7")
        #expect(rest.map(\.syspath) == (1..<8).map { node($0).syspath })
        #expect(rest.allSatisfy { $0.answeredByHIDAPI })
    }

    @Test func throttleBoundsABurstByItsLengthNotItsSize() {
        // 40 nodes, one every 10 ms for 390 ms, a pass whenever one comes or one is due.
        var p = pending()
        let api = FakeHIDAPI(listed: Set(0..<40), entry: hidapiEntry)
        var reported = 0
        for ms in stride(from: 0, through: 600, by: 10) {
            if ms < 400 { p.add(node(ms / 10), now: at(ms), initial: false) }
            reported += pass(&p, at: at(ms), api).count
        }
        #expect(reported == 40)
        #expect(api.calls <= 1 + 390 / 100 + 1, "\(api.calls) enumerations for 40 nodes over 390 ms")
        #expect(api.calls >= 2)
    }

    @Test func aNodeHIDAPIDoesNotListIsRetriedThenReportedFromSysfs() {
        var p = pending()
        let api = FakeHIDAPI(listed: [], entry: hidapiEntry)
        p.add(node(3), now: at(0), initial: true)
        #expect(pass(&p, at: at(0), api).isEmpty)
        #expect(p.waitingForInitial)
        #expect(p.nextAttempt == at(100))
        // Listed on the second try: ready then, with hidapi's strings.
        api.listed = [3]
        let second = pass(&p, at: at(100), api)
        #expect(second.count == 1 && second[0].answeredByHIDAPI && second[0].snapshot.product == "hidapi name 3")
        #expect(api.calls == 2)

        // Never listed: reported with sysfs's facts after the resolve timeout.
        p.add(node(4), now: at(200), initial: false)
        var last: [PendingNodes.Resolved] = []
        var ms = 200
        while let next = p.nextAttempt, ms < 5000 {
            ms = Int((next - t0) / .milliseconds(1))
            last = pass(&p, at: next, api)
        }
        #expect(last.count == 1 && last[0].timedOut && !last[0].answeredByHIDAPI)
        #expect(last.first?.snapshot.product == "sysfs name 4")
        #expect(ms >= 2200)
    }

    @Test func withHIDAPIBefore015NothingIsAskedAndSysfsAnswers() {
        var p = pending()
        let api = FakeHIDAPI(listed: Set(0..<4), entry: hidapiEntry)
        for n in 0..<4 { p.add(node(n), now: at(0), initial: false) }
        let resolved = pass(&p, at: at(0), api, consult: false)
        #expect(api.calls == 0)
        #expect(resolved.count == 4 && resolved.allSatisfy { !$0.answeredByHIDAPI })
        #expect(resolved.map(\.snapshot.product) == (0..<4).map { "sysfs name \($0)" })
    }

    @Test func nodesHIDAPIDoesNotListOrNotReadyOrGoneAskNothing() {
        var p = pending()
        let api = FakeHIDAPI(listed: Set(0..<4), entry: hidapiEntry)
        for n in 0..<3 { p.add(node(n), now: at(0), initial: false) }
        // 0: virtual bus (hidapi lists no BUS_VIRTUAL), 1: its HID device's uevent unreadable, 2: gone.
        let resolved = pass(&p, at: at(0), api, facts: { c in
            switch c.syspath {
            case self.node(0).syspath: self.facts(c, bus: "0006")
            case self.node(1).syspath: self.facts(c, ready: false)
            default: nil
            }
        })
        #expect(api.calls == 0)
        #expect(resolved.map(\.syspath) == [node(0).syspath])
        #expect(p.contains(node(1).syspath) && !p.contains(node(2).syspath))
    }

    @Test func throttleAllowsTheFirstAtOnceThenOnePerInterval() {
        var t = EnumerationThrottle(interval: .milliseconds(100))
        #expect(t.allows(at: at(0)))
        t.enumerationEnded(at: at(30))  // it took 30 ms
        #expect(!t.allows(at: at(129)))
        #expect(t.earliest(after: at(50)) == at(130))
        #expect(t.allows(at: at(130)))
        #expect(t.earliest(after: at(500)) == at(500))
    }
}
