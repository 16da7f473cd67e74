// The USB source's order rules (AssemblyBook): every announced device ends
// in one arrival and one removal, in that order, whether it was made ready
// or left first; `.enumerated` waits for the devices present at start. Pure:
// no thread, no device.
@testable import DevifUSB
import DevifCore
import SeededRandom
import Synchronization
import Testing

private func device(_ address: UInt8, serial: String? = nil) -> DeviceSnapshot {
    DeviceSnapshot(kind: .usb, portChain: PortChain(bus: 1, ports: [address]), deviceAddress: address,
                   vendorID: 0x1209, productID: 0x0001, serialNumber: serial,
                   devnode: USBAssembler.devnode(bus: 1, address: address))
}

/// The steps as short strings: "+node", "+node(left)", "-node", "enumerated",
/// "notice", "assemble k", "abandon k".
private func describe(_ steps: [AssemblyBook<Int>.Step]) -> [String] {
    steps.map { step in
        switch step {
        case .emit(.arrived(let s)): "+\(s.devnode!.suffix(3))" + (s.leftBeforeReady ? "(left)" : "")
        case .emit(.removed(let key)): "-\(key.suffix(3))"
        case .emit(.enumerated): "enumerated"
        case .emit(.notice): "notice"
        case .assemble(let k): "assemble \(k)"
        case .abandon(let k): "abandon \(k)"
        }
    }
}

private func ready(_ address: UInt8, problems: [String] = [], gone: Bool = false) -> USBAssembler.Result {
    USBAssembler.Result(snapshot: device(address, serial: gone ? nil : "S\(address)"), problems: problems, gone: gone)
}

@Suite("USB source: assembly order (AssemblyBook)")
struct AssemblyBookTests {
    @Test("a device made ready: assemble, then its arrival; its departure: its removal")
    func readyThenLeft() {
        var book = AssemblyBook<Int>()
        #expect(describe(book.announced(1, known: device(1))) == ["assemble 1"])
        #expect(book.assemblingCount == 1)
        #expect(describe(book.assembled(1, ready(1))) == ["+001"])
        #expect(describe(book.left(1)) == ["-001"])
        #expect(describe(book.left(1)).isEmpty, "a second departure reports nothing")
        #expect(!book.contains(1))
    }

    @Test("a device that leaves while being made ready is reported as known, marked, then removed; its late result is ignored")
    func leftWhileAssembling() {
        var book = AssemblyBook<Int>()
        _ = book.announced(7, known: device(7))
        #expect(describe(book.left(7)) == ["abandon 7", "+007(left)", "-007"])
        #expect(describe(book.assembled(7, ready(7))).isEmpty)
        #expect(book.assemblingCount == 0)
    }

    @Test("what the announcement told is made only for a device that leaves before it is ready")
    func knownMadeOnlyWhenNeeded() {
        let made = Mutex(0)
        let counted = { @Sendable (address: UInt8) -> DeviceSnapshot in
            made.withLock { $0 += 1 }
            return device(address)
        }
        var book = AssemblyBook<Int>()
        _ = book.announced(1, known: counted(1))
        _ = book.announced(2, known: counted(2))
        #expect(made.withLock { $0 } == 0, "announcing builds nothing")
        _ = book.assembled(1, ready(1))
        _ = book.left(1)
        #expect(made.withLock { $0 } == 0, "a device made ready never needs it")
        #expect(describe(book.left(2)) == ["abandon 2", "+002(left)", "-002"])
        #expect(made.withLock { $0 } == 1)
    }

    @Test("a worker that finds its device gone reports it marked, without its problems; the departure removes it")
    func goneWhileAssembling() {
        var book = AssemblyBook<Int>()
        _ = book.announced(3, known: device(3))
        #expect(describe(book.assembled(3, ready(3, problems: ["x"], gone: true))) == ["+003(left)"])
        #expect(describe(book.left(3)) == ["-003"])
    }

    @Test("problems of a ready device come as one notice before its arrival")
    func problemsBeforeArrival() {
        var book = AssemblyBook<Int>()
        _ = book.announced(2, known: device(2))
        #expect(describe(book.assembled(2, ready(2, problems: ["a", "b"]))) == ["notice", "+002"])
    }

    @Test("devices are reported in the order they become ready, not announced: a slow one holds up no other")
    func slowDeviceHoldsNoOther() {
        var book = AssemblyBook<Int>()
        _ = book.announced(1, known: device(1))
        _ = book.announced(2, known: device(2))
        _ = book.announced(3, known: device(3))
        #expect(describe(book.assembled(3, ready(3))) == ["+003"])
        #expect(describe(book.assembled(2, ready(2))) == ["+002"])
        #expect(book.assemblingCount == 1)
        #expect(describe(book.assembled(1, ready(1))) == ["+001"])
    }

    @Test("a second announcement of a present device is ignored; a replug after the removal is a new device")
    func duplicatesAndReplug() {
        var book = AssemblyBook<Int>()
        _ = book.announced(4, known: device(4))
        #expect(describe(book.announced(4, known: device(4))).isEmpty)
        _ = book.assembled(4, ready(4))
        #expect(describe(book.announced(4, known: device(4))).isEmpty)
        #expect(describe(book.left(4)) == ["-004"])
        #expect(describe(book.announced(4, known: device(4))) == ["assemble 4"])
    }

    @Test("enumerated comes once, after every device announced before the marker is reported (ready or left)")
    func enumeratedWaitsForTheFirstDevices() {
        var book = AssemblyBook<Int>()
        _ = book.announced(1, known: device(1))
        _ = book.announced(2, known: device(2))
        #expect(describe(book.enumerationEnded()).isEmpty)
        _ = book.announced(9, known: device(9))  // live: not waited for
        #expect(describe(book.assembled(1, ready(1))) == ["+001"])
        #expect(describe(book.left(2)) == ["abandon 2", "+002(left)", "-002", "enumerated"])
        #expect(describe(book.assembled(9, ready(9))) == ["+009"])
    }

    @Test("with nothing present at start, enumerated comes at the marker")
    func enumeratedWhenEmpty() {
        var book = AssemblyBook<Int>()
        #expect(describe(book.enumerationEnded()) == ["enumerated"])
        #expect(describe(book.enumerationEnded()).isEmpty)
    }

    @Test("kernel mode: a walked device gone before it was read is forgotten silently; one announced gone is reported marked")
    func forgetAndAnnouncedGone() {
        var book = AssemblyBook<Int>()
        _ = book.announced(5, known: device(5))
        #expect(describe(book.forget(5)) == ["abandon 5"])
        #expect(describe(book.left(5)).isEmpty)
        #expect(describe(book.announcedGone(6, known: device(6))) == ["+006(left)"])
        #expect(describe(book.left(6)) == ["-006"])
        #expect(book.reportedKeys.isEmpty)
    }

    @Test("a random order of announcements, results and departures: every announced device gets exactly one arrival then one removal")
    func randomInterleavings() {
        for seed in 1...200 {
            var rng = SplitMix64(seed: UInt64(seed))
            var book = AssemblyBook<Int>()
            var log: [String] = []
            var announced = Set<Int>(), resulted = Set<Int>(), left = Set<Int>()
            var actions: [(Int, Int)] = []  // (device, 0 announce / 1 result / 2 leave)
            for d in 1...8 { actions += [(d, 0), (d, 1), (d, 2)] }
            actions.shuffle(using: &rng)
            // An announcement comes before its departure (libusb's order);
            // a result only after its announcement.
            var pending = actions
            while !pending.isEmpty {
                let i = pending.firstIndex { (d, kind) in
                    kind == 0 || (kind == 1 && announced.contains(d)) || (kind == 2 && announced.contains(d))
                }!
                let (d, kind) = pending.remove(at: i)
                switch kind {
                case 0: announced.insert(d); log += describe(book.announced(d, known: device(UInt8(d))))
                case 1: resulted.insert(d); log += describe(book.assembled(d, ready(UInt8(d))))
                default: left.insert(d); log += describe(book.left(d))
                }
            }
            for d in 1...8 {
                let name = String(UInt8(d)).count == 1 ? "00\(d)" : "0\(d)"
                let mine = log.filter { $0.hasSuffix(name) || $0.hasSuffix(name + "(left)") }
                #expect(mine.count == 2 && mine[0].hasPrefix("+") && mine[1] == "-\(name)", "seed \(seed), device \(d): \(mine)")
            }
        }
    }
}
