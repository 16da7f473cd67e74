import Devif
import DevifCore
import Foundation
import Synchronization
import SeededRandom
import Testing

@Suite("DeviceManager")
struct DeviceManagerTests {
    static let serialLink = "usb#vid_1209&pid_0001#SER#\(usbDeviceGUIDText)"

    // MARK: 1. Enumeration

    @Test("waitUntilEnumerated waits for every source")
    func enumerationWaitsForEverySource() async throws {
        let usb = FakeSource("usb"), hid = FakeSource("hid")
        let h = try Harness([usb, hid])
        #expect(await h.manager.waitUntilEnumerated(timeout: .milliseconds(30)) == false,
                "no source has enumerated yet")
        usb.enumerated()
        #expect(await h.barrier(usb))
        #expect(await h.manager.waitUntilEnumerated(timeout: .milliseconds(30)) == false,
                "the hid source has not enumerated yet")
        hid.enumerated()
        #expect(await h.manager.waitUntilEnumerated(timeout: .seconds(5)) == true)
        // Once done, it stays done and answers at once.
        #expect(await h.manager.waitUntilEnumerated(timeout: .zero) == true)
    }

    @Test("waitUntilEnumerated ends at once on cancellation, and many waiters all wake on enumeration",
          .timeLimit(.minutes(1)))
    func enumerationWaitCancelsAndWakesAll() async throws {
        let usb = FakeSource("usb")
        let h = try Harness([usb])
        let manager = h.manager
        // An hour's timeout: only cancellation can end it in time.
        let cancelled = Task { await manager.waitUntilEnumerated(timeout: .seconds(3600)) }
        cancelled.cancel()
        #expect(await cancelled.value == false)
        let waiting = (0..<200).map { _ in Task { await manager.waitUntilEnumerated(timeout: .seconds(3600)) } }
        usb.enumerated()
        for w in waiting { #expect(await w.value == true) }
    }

    @Test("a source that cannot start counts as enumerated and is reported once")
    func failingSourceIsReportedOnce() async throws {
        let message = "no hidraw nodes can be read: load the hidraw module"
        let usb = FakeSource("usb"), hid = FakeSource("hid", failing: message)
        let h = try Harness([usb, hid])
        h.manager.start()  // a second start changes nothing
        #expect(hid.startCount.load(ordering: .relaxed) == 1)
        #expect(await h.manager.waitUntilEnumerated(timeout: .milliseconds(30)) == false,
                "usb has not enumerated")
        usb.enumerated()
        #expect(await h.manager.waitUntilEnumerated(timeout: .seconds(5)) == true)
        #expect(await h.barrier(usb))
        let said = h.notices.items.filter { $0.contains(message) }
        #expect(said == ["hid: " + message], "notices: \(h.notices.items)")
        // A handler added later is given the past notice too, also once, typed.
        let late = Recorder<Notice>()
        h.manager.onNotice { late.append($0) }
        #expect(late.items.filter { $0.message == message }
                == [Notice(source: "hid", .sourceUnavailable, message)])
    }

    @Test("a source's .notice reaches onNotice prefixed with its name")
    func sourceNoticeIsPrefixed() async throws {
        let usb = FakeSource("usb")
        let h = try Harness([usb])
        usb.push(.notice(Notice(.degraded, "udevd is not running: using kernel uevents")))
        let seen = await h.notices.wait(count: 1)
        #expect(seen == ["usb: udevd is not running: using kernel uevents"])
    }

    @Test("a manager with no sources is enumerated at once")
    func noSourcesIsEnumerated() async throws {
        let h = try Harness([])
        #expect(await h.manager.waitUntilEnumerated(timeout: .milliseconds(200)) == true)
    }

    // MARK: 2. Arrival, removal, memory

    @Test("a USB device arrives, is listed, leaves, and is remembered")
    func arrivalAndRemoval() async throws {
        let usb = FakeSource("usb")
        let h = try Harness([usb])
        let updates = record(h.manager.watch())
        let snapshot = usbSnapshot()
        usb.arrive(snapshot)
        let arrived = await updates.wait(count: 1).events
        try #require(arrived.count == 1)
        #expect(arrived[0].event == .arrival)
        #expect(arrived[0].interface.symbolicLink.rawValue == Self.serialLink)

        let listed = h.manager.interfaces()
        try #require(listed.count == 1, "listed: \(listed.map(\.symbolicLink.rawValue))")
        let i = listed[0]
        #expect(i.symbolicLink.rawValue == Self.serialLink)
        #expect(i.className == "usb-device")
        #expect(i.classGuid == usbDeviceGUID)
        #expect(i.kind == .usb)
        #expect(i.vendorId == 0x1209 && i.productId == 0x0001)
        #expect(i.serialNumber == "SER")
        #expect(i.present)
        #expect(i.devnode == "/dev/bus/usb/001/004")
        #expect(i.portChain?.description == "1-1")
        #expect(i.interfaceNumber == nil)
        #expect(i.access == .ok)
        #expect(h.manager.interface(link: Self.serialLink)?.present == true)

        usb.remove(snapshot)
        let all = await updates.wait(count: 2).events
        try #require(all.count == 2)
        #expect(all[1].event == .removal)
        #expect(all[1].interface.symbolicLink.rawValue == Self.serialLink)
        #expect(all[1].interface.present == false)
        #expect(await h.barrier(usb))  // the registry has recorded the removal
        #expect(h.manager.interfaces().isEmpty)
        let remembered = h.manager.allInterfaces()
        try #require(remembered.count == 1)
        #expect(remembered[0].symbolicLink.rawValue == Self.serialLink)
        #expect(remembered[0].present == false)
        #expect(remembered[0].serialNumber == "SER")
        #expect(h.manager.interface(link: Self.serialLink)?.present == false)
        #expect(h.manager.interface(link: "usb#vid_1209&pid_0001#NOPE#\(usbDeviceGUIDText)") == nil)
    }

    @Test("a removal for a key never reported changes nothing")
    func unknownRemovalIsIgnored() async throws {
        let usb = FakeSource("usb")
        let h = try Harness([usb])
        let updates = record(h.manager.watch())
        usb.arrive(usbSnapshot())
        usb.push(.removed(key: "/dev/bus/usb/009/099"))
        usb.arrive(usbSnapshot(serial: "OTHER", address: 5))
        let events = await updates.wait(count: 2).events
        #expect(await h.barrier(usb))
        #expect(events.map(\.event) == [.arrival, .arrival])
        #expect(events.map(\.seq) == [1, 2])
        #expect(h.manager.interfaces().count == 2)
    }

    @Test("removal keys are per source: the same key from another source is another device")
    func removalKeysArePerSource() async throws {
        let a = FakeSource("usb"), b = FakeSource("usb2")
        let h = try Harness([a, b])
        let snapshot = usbSnapshot()
        a.arrive(snapshot)
        #expect(await h.barrier(a))
        b.remove(snapshot)  // same sourceKey, other source
        #expect(await h.barrier(b))
        #expect(h.manager.interfaces().map(\.symbolicLink.rawValue) == [Self.serialLink])
    }

    // MARK: 3. Snapshot + updates: no gap, no duplicate

    @Test("watch: snapshot and updates cover every arrival exactly once, under races")
    func watchHasNoGapAndNoDuplicate() async throws {
        let rounds = 300, devices = 12
        var splits: [Int: Int] = [:]  // snapshot size -> rounds, to see the races happened
        for round in 0..<rounds {
            let usb = FakeSource("usb")
            let h = try Harness([usb])
            var rng = SplitMix64(seed: UInt64(round))
            let pauses = (0..<devices).map { _ in Int(rng.next() % 40_000) }
            let watchDelay = Int(rng.next() % 100_000)
            let events = (0..<devices).map { n in
                SourceEvent.arrived(usbSnapshot(serial: "R\(round)-\(n)", ports: [UInt8(n + 1)],
                                                address: UInt8(n + 2)))
            }
            // The watch is taken once the source thread has pushed a random
            // number of devices (then after a random pause), so it lands
            // before, during and after the pipeline applies them.
            let pushed = Counter()
            let watchAfter = Int(rng.next() % UInt64(devices))
            let thread = usb.pushOnThread(events) { n in
                pushed.value.store(n, ordering: .releasing)  // events 0..<n are pushed
                spin(pauses[n])
            }
            var waited = 0
            // Yield, not spin: on a 2-core machine a spinning test thread would starve the pipeline thread.
            while pushed.value.load(ordering: .acquiring) < watchAfter && waited < 10_000_000 {
                waited += 1
                sched_yield()
            }
            spin(watchDelay)
            let watch = h.manager.watch()
            let updates = record(watch)
            let snapSeqs = watch.snapshotEvents.map(\.seq)
            let needed = devices - watch.snapshot.count
            let got = await updates.wait(count: needed).events
            _ = thread
            let serials = (watch.snapshot + got.map(\.interface)).compactMap(\.serialNumber)
            let expected = (0..<devices).map { "R\(round)-\($0)" }
            #expect(serials.sorted() == expected.sorted(),
                    "round \(round): snapshot \(watch.snapshot.count), updates \(got.count)")
            #expect(Set(serials).count == serials.count, "round \(round): a device was delivered twice")
            if let maxSnap = snapSeqs.max() {
                #expect(got.allSatisfy { $0.seq > maxSnap }, "round \(round): an update is older than the snapshot")
            }
            #expect(snapSeqs == snapSeqs.sorted(), "round \(round): snapshot not in arrival order")
            // Together they are exactly seqs 1...devices (all arrivals, none lost).
            #expect((snapSeqs + got.map(\.seq)).sorted() == Array(1...UInt64(devices)), "round \(round)")
            splits[watch.snapshot.count, default: 0] += 1
            h.manager.stop()
        }
        // The race was really run: some watches began while the pipeline was
        // part-way through the arrivals (typically about half of the rounds).
        let summary = splits.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value)" }.joined(separator: " ")
        let partial = splits.filter { $0.key > 0 && $0.key < devices }.values.reduce(0, +)
        #expect(partial > 0, "no watch began mid-stream; snapshot sizes seen: \(summary)")
    }

    // MARK: 4. Twins

    @Test("twins: the newcomer gets serial@location only while another holds the serial-only link")
    func twinsGetDistinctLinks() async throws {
        let usb = FakeSource("usb")
        let h = try Harness([usb])
        let a = usbSnapshot(ports: [1], address: 4)
        let b = usbSnapshot(ports: [2], address: 5)
        let c = usbSnapshot(ports: [3], address: 6)
        let atB = "usb#vid_1209&pid_0001#SER@1-2#\(usbDeviceGUIDText)"
        let atC = "usb#vid_1209&pid_0001#SER@1-3#\(usbDeviceGUIDText)"
        func links() -> [String: String] {
            Dictionary(uniqueKeysWithValues: h.manager.interfaces().map { ($0.devnode ?? "?", $0.symbolicLink.rawValue) })
        }

        usb.arrive(a)
        usb.arrive(b)
        #expect(await h.barrier(usb))
        #expect(links() == [a.devnode!: Self.serialLink, b.devnode!: atB])

        usb.arrive(c)  // a third twin: its own serial@location
        #expect(await h.barrier(usb))
        #expect(links() == [a.devnode!: Self.serialLink, b.devnode!: atB, c.devnode!: atC])

        // The first leaves: the others keep their names (names handed out do not change).
        usb.remove(a)
        #expect(await h.barrier(usb))
        #expect(links() == [b.devnode!: atB, c.devnode!: atC])

        // The first comes back: nobody holds the serial-only link, so it gets it again.
        usb.arrive(a)
        #expect(await h.barrier(usb))
        #expect(links() == [a.devnode!: Self.serialLink, b.devnode!: atB, c.devnode!: atC])

        // All leave; the second is replugged alone: the serial-only link.
        usb.remove(a); usb.remove(b); usb.remove(c)
        usb.arrive(b)
        #expect(await h.barrier(usb))
        #expect(links() == [b.devnode!: Self.serialLink])
        // And the first, arriving now, is the newcomer: serial@its location.
        usb.arrive(a)
        #expect(await h.barrier(usb))
        #expect(links() == [b.devnode!: Self.serialLink, a.devnode!: "usb#vid_1209&pid_0001#SER@1-1#\(usbDeviceGUIDText)"])
    }

    @Test("an arrival applied on the source's thread still gives its notice on the pipeline's thread, after the arrival and before what the source sent next")
    func inlineArrivalNoticeOnThePipelineThread() async throws {
        let hid = FakeSource("hid")
        let h = try Harness([hid])
        #expect(await h.barrier(hid), "the manager started")
        let threads = Recorder<String>()
        h.manager.onNotice { n in
            // devif names its threads.
            if n.message.contains("ordinal") { threads.append(currentThreadName()) }
        }
        func twin(_ node: Int) -> DeviceSnapshot {
            DeviceSnapshot(kind: .hid, vendorID: 0x1209, productID: 0x0e21, product: "twin", serialNumber: "SAME",
                           hid: HIDProperties(usages: [], reportDescriptor: [], interfaceNumber: nil,
                                              busType: BusType(rawValue: 6), physicalLocation: "uhid"),
                           devnode: "/dev/hidraw\(node)", sysfsPath: "/sys/class/hidraw/hidraw\(node)", access: .ok)
        }
        // One at a time, each after the pipeline has gone idle: the third
        // (serial and location both taken) is named with an ordinal and said so.
        for node in 1...3 {
            hid.arrive(twin(node))
            #expect(await h.barrier(hid))
        }
        #expect(await threads.wait { items, _ in !items.isEmpty })
        #expect(threads.items == ["devif-pipeline"], "the naming notice ran its handler on \(threads.items)")
        let order = h.notices.items.filter { $0.contains("ordinal") || $0.hasPrefix("hid: barrier") }
        // Barrier 1 at start, one after each arrival: the ordinal notice comes
        // after the third arrival and before the barrier sent after it.
        #expect(order.count == 5 && order[3].contains("ordinal"), "\(order)")
    }

    @Test("identical devices (same serial and location) are all named: the ordinal !N, and a notice saying why")
    func identicalDevicesGetOrdinals() async throws {
        let hid = FakeSource("hid")
        let h = try Harness([hid])
        // Three uhid-like devices identical in every string (not on USB: the
        // location is HID_PHYS), each on its own hidraw node.
        func twin(_ node: Int) -> DeviceSnapshot {
            DeviceSnapshot(kind: .hid, vendorID: 0x1209, productID: 0x0e20, product: "twin", serialNumber: "SAME",
                           hid: HIDProperties(usages: [.keyboard], reportDescriptor: [], interfaceNumber: nil,
                                              busType: BusType(rawValue: 6), physicalLocation: "uhid"),
                           devnode: "/dev/hidraw\(node)", sysfsPath: "/sys/class/hidraw/hidraw\(node)", access: .ok)
        }
        let (a, b, c) = (twin(1), twin(2), twin(3))
        hid.arrive(a); hid.arrive(b); hid.arrive(c)
        #expect(await h.barrier(hid))
        let present = h.manager.interfaces()
        // hid and keyboard classes: two instances each, six in all, no link twice.
        #expect(present.count == 6)
        #expect(Set(present.map(\.symbolicLink.rawValue)).count == 6)
        let hidGUID = "{4d1e55b2-f16f-11cf-88cb-001111000030}"
        let byNode = Dictionary(grouping: present.filter { $0.symbolicLink.rawValue.hasSuffix(hidGUID) }, by: { $0.devnode ?? "?" })
            .mapValues { $0.map(\.symbolicLink.rawValue) }
        #expect(byNode == [
            a.devnode!: ["hid#vid_1209&pid_0e20&bus_06#SAME#\(hidGUID)"],
            b.devnode!: ["hid#vid_1209&pid_0e20&bus_06#SAME@uhid#\(hidGUID)"],
            c.devnode!: ["hid#vid_1209&pid_0e20&bus_06#SAME@uhid!2#\(hidGUID)"],
        ])
        // Every class of the third has the same ordinal; its links parse back to it.
        for i in present where i.devnode == c.devnode {
            #expect(try SymbolicLink(parsing: i.symbolicLink.rawValue).ordinal == 2)
        }
        let said = await h.notices.wait { items, _ in items.contains { $0.contains("ordinal !2") } }
        #expect(said, "a notice names the ordinal")
        // A fourth gets !3; after the third leaves, a fifth takes the freed !2.
        let d = twin(4)
        hid.arrive(d)
        hid.remove(c)
        let e = twin(5)
        hid.arrive(e)
        #expect(await h.barrier(hid))
        let links = Dictionary(uniqueKeysWithValues: h.manager.interfaces().filter { $0.symbolicLink.rawValue.hasSuffix(hidGUID) }
            .map { ($0.devnode ?? "?", $0.symbolicLink.rawValue) })
        #expect(links[d.devnode!] == "hid#vid_1209&pid_0e20&bus_06#SAME@uhid!3#\(hidGUID)")
        #expect(links[e.devnode!] == "hid#vid_1209&pid_0e20&bus_06#SAME@uhid!2#\(hidGUID)")
        #expect(links.count == 4)
    }

    @Test("devices without a serial are named by location and never clash")
    func noSerialUsesLocation() async throws {
        let usb = FakeSource("usb")
        let h = try Harness([usb])
        usb.arrive(usbSnapshot(serial: nil, ports: [1, 4], address: 4))
        usb.arrive(usbSnapshot(serial: nil, ports: [2], address: 5))
        #expect(await h.barrier(usb))
        #expect(h.manager.interfaces().map(\.symbolicLink.rawValue) == [
            "usb#vid_1209&pid_0001#@1-1.4#\(usbDeviceGUIDText)",
            "usb#vid_1209&pid_0001#@1-2#\(usbDeviceGUIDText)",
        ])
    }

    // MARK: 5. Filters

    static let probeGUID = try! GUID(parsing: "{0123abcd-4567-89ab-cdef-0123456789ab}")

    /// The built-in classes plus one parsed from class-file text.
    static func catalogWithProbe() throws -> ClassCatalog {
        let text = """
        # a probe class for the tests
        [class {0123abcd-4567-89ab-cdef-0123456789ab}]
        name = my-probe
        description = The test probe
        match = vid=1209 pid=0001
        """
        let parsed = CatalogParser.parse(text, file: "inline.conf")
        try #require(parsed.diagnostics.isEmpty, "\(parsed.diagnostics)")
        var catalog = ClassCatalog.builtIn
        var diagnostics: [CatalogDiagnostic] = []
        catalog.merge(parsed.definitions, from: "inline.conf", diagnostics: &diagnostics)
        try #require(diagnostics.isEmpty, "\(diagnostics)")
        return catalog
    }

    @Test("filters by class GUID, VID, PID and kind, on lists and on watches")
    func filters() async throws {
        let usb = FakeSource("usb"), hid = FakeSource("hid")
        let h = try Harness([usb, hid], catalog: try Self.catalogWithProbe())
        let cases: [(String, InterfaceFilter, Set<String>)] = [
            ("all", .all, [
                Self.serialLink, "usb#vid_1209&pid_0001#SER#{0123abcd-4567-89ab-cdef-0123456789ab}",
                "usb#vid_1209&pid_0002#S2#\(usbDeviceGUIDText)",
                "hid#vid_046d&pid_c31c&mi_00#KB1#{4d1e55b2-f16f-11cf-88cb-001111000030}",
                "hid#vid_046d&pid_c31c&mi_00#KB1#{884b96c3-56ef-11d1-bc8c-00a0c91405dd}",
            ]),
            ("usb-device", InterfaceFilter(classGuid: usbDeviceGUID), [
                Self.serialLink, "usb#vid_1209&pid_0002#S2#\(usbDeviceGUIDText)",
            ]),
            ("my-probe", InterfaceFilter(classGuid: Self.probeGUID), [
                "usb#vid_1209&pid_0001#SER#{0123abcd-4567-89ab-cdef-0123456789ab}",
            ]),
            ("keyboard", InterfaceFilter(classGuid: WellKnownClass.keyboard.guid), [
                "hid#vid_046d&pid_c31c&mi_00#KB1#{884b96c3-56ef-11d1-bc8c-00a0c91405dd}",
            ]),
            ("vid 1209", InterfaceFilter(vendorId: 0x1209), [
                Self.serialLink, "usb#vid_1209&pid_0001#SER#{0123abcd-4567-89ab-cdef-0123456789ab}",
                "usb#vid_1209&pid_0002#S2#\(usbDeviceGUIDText)",
            ]),
            ("pid 0002", InterfaceFilter(productId: 0x0002), ["usb#vid_1209&pid_0002#S2#\(usbDeviceGUIDText)"]),
            ("kind hid", InterfaceFilter(kind: .hid), [
                "hid#vid_046d&pid_c31c&mi_00#KB1#{4d1e55b2-f16f-11cf-88cb-001111000030}",
                "hid#vid_046d&pid_c31c&mi_00#KB1#{884b96c3-56ef-11d1-bc8c-00a0c91405dd}",
            ]),
            ("vid 1209 + kind hid", InterfaceFilter(vendorId: 0x1209, kind: .hid), []),
            ("vid 046d + usb-device", InterfaceFilter(classGuid: usbDeviceGUID, vendorId: 0x046d), []),
        ]
        // One watch per filter before anything arrives, plus one for everything
        // to know when all events were published.
        let watches = cases.map { record(h.manager.watch($0.1)) }
        let everything = record(h.manager.watch())
        usb.arrive(usbSnapshot())
        usb.arrive(usbSnapshot(pid: 0x0002, serial: "S2", ports: [2], address: 5))
        hid.arrive(hidKeyboardSnapshot())
        _ = await everything.wait(count: 5)
        #expect(await h.barrier(usb))
        #expect(await h.barrier(hid))
        for ((name, filter, expected), watch) in zip(cases, watches) {
            #expect(Set(h.manager.interfaces(filter).map(\.symbolicLink.rawValue)) == expected, "interfaces(\(name))")
            let got = await watch.wait(count: expected.count).events
            #expect(got.allSatisfy { $0.event == .arrival })
            #expect(Set(got.map(\.interface.symbolicLink.rawValue)) == expected, "watch(\(name))")
            #expect(got.count == expected.count, "watch(\(name)) duplicates")
            // A watch begun now has them all in its snapshot.
            #expect(Set(h.manager.watch(filter).snapshot.map(\.symbolicLink.rawValue)) == expected, "snapshot(\(name))")
        }
        // Removals are filtered the same way: the keyboard's leave, only watches
        // that saw it arrive hear it go.
        hid.remove(hidKeyboardSnapshot())
        _ = await everything.wait(count: 7)
        #expect(await h.barrier(hid))
        for ((name, _, expected), watch) in zip(cases, watches) {
            let hidLinks = expected.filter { $0.hasPrefix("hid#") }
            let got = await watch.wait(count: expected.count + hidLinks.count).events
            #expect(Set(got.filter { $0.event == .removal }.map(\.interface.symbolicLink.rawValue)) == hidLinks,
                    "removals seen by watch(\(name))")
            #expect(got.count == expected.count + hidLinks.count, "watch(\(name)) got \(got.count)")
        }
    }

    // MARK: 6. Sequence numbers

    @Test("sequence numbers increase by one per published event")
    func sequenceNumbersAreContiguous() async throws {
        let usb = FakeSource("usb"), hid = FakeSource("hid")
        let h = try Harness([usb, hid])
        let updates = record(h.manager.watch())
        let a = usbSnapshot(), b = usbSnapshot(serial: "B", ports: [2], address: 5), k = hidKeyboardSnapshot()
        usb.arrive(a)          // 1
        hid.arrive(k)          // 2 (hid + keyboard)
        usb.arrive(b)          // 1
        usb.remove(a)          // 1
        hid.remove(k)          // 2
        usb.arrive(a)          // 1
        usb.arrive(a)          // re-report: removal + arrival = 2
        usb.remove(b)          // 1
        let events = await updates.wait(count: 11).events
        #expect(events.map(\.seq) == Array(1...11))
        #expect(events.map(\.event) == [.arrival, .arrival, .arrival, .arrival, .removal, .removal, .removal,
                                        .arrival, .removal, .arrival, .removal])
        #expect(await h.barrier(usb))
        #expect(updates.items.count == 11, "nothing beyond the 11 events")
    }

    // MARK: 7. Callbacks

    @Test("onChange(enumerate:) gives the present instances first, then changes; cancel stops it")
    func onChangeEnumeratesThenFollows() async throws {
        let usb = FakeSource("usb")
        let h = try Harness([usb])
        let a = usbSnapshot(serial: "A", ports: [1], address: 4)
        let b = usbSnapshot(serial: "B", ports: [2], address: 5)
        let c = usbSnapshot(serial: "C", ports: [3], address: 6)
        usb.arrive(a)
        usb.arrive(b)
        #expect(await h.barrier(usb))

        let calls = Recorder<WatchUpdate>()
        let token = h.manager.onChange(enumerate: true) { calls.append($0) }
        usb.arrive(c)
        usb.remove(a)
        let got = await calls.wait(count: 4).events
        #expect(got.map(\.interface.serialNumber) == ["A", "B", "C", "A"])
        #expect(got.map(\.event) == [.arrival, .arrival, .arrival, .removal])
        #expect(got.map(\.seq) == [1, 2, 3, 4])

        // A live token (to show the event is delivered to callbacks at all) and
        // a watch (to know the manager has published it).
        let live = Recorder<WatchUpdate>()
        let liveToken = h.manager.onChange { live.append($0) }
        let watch = record(h.manager.watch())
        token.cancel()
        usb.arrive(a)
        #expect(await watch.wait(count: 1).events.first?.interface.serialNumber == "A")
        #expect(await live.wait(count: 1).events.first?.seq == 5)
        #expect(await h.barrier(usb))
        #expect(calls.items.count == 4, "a cancelled callback was called: \(calls.items.events.map(\.seq))")
        liveToken.cancel()
    }

    @Test("onChange(enumerate:) without enumerate gives only later changes")
    func onChangeWithoutEnumerate() async throws {
        let usb = FakeSource("usb")
        let h = try Harness([usb])
        usb.arrive(usbSnapshot(serial: "A", ports: [1], address: 4))
        #expect(await h.barrier(usb))
        let calls = Recorder<WatchUpdate>()
        let token = h.manager.onChange(InterfaceFilter(vendorId: 0x1209)) { calls.append($0) }
        usb.arrive(usbSnapshot(vid: 0x2222, serial: "X", ports: [9], address: 9))  // filtered out
        usb.arrive(usbSnapshot(serial: "B", ports: [2], address: 5))
        let got = await calls.wait(count: 1).events
        #expect(got.map(\.interface.serialNumber) == ["B"])
        #expect(await h.barrier(usb))
        #expect(calls.items.count == 1)
        token.cancel()
    }

    @Test("onChange(enumerate:) delivers the present instances even if nothing changes afterwards")
    func onChangeEnumeratesWithoutLaterChange() async throws {
        let usb = FakeSource("usb")
        let h = try Harness([usb])
        usb.arrive(usbSnapshot(serial: "A"))
        #expect(await h.barrier(usb))
        let calls = Recorder<WatchUpdate>()
        let token = h.manager.onChange(enumerate: true) { calls.append($0) }
        let got = await calls.wait(count: 1, timeout: .seconds(2)).events
        #expect(got.map(\.interface.serialNumber) == ["A"], "the present device was not delivered")
        token.cancel()
    }

    // MARK: 8. Overflow

    @Test("a watch that falls behind is told how many it missed; a fast one gets everything")
    func overflowIsCounted() async throws {
        let usb = FakeSource("usb")
        let h = try Harness([usb])
        let slow = h.manager.watch(capacity: 4)  // not read until the end
        let fast = record(h.manager.watch(capacity: 64))
        let total = 50
        for n in 0..<total {
            usb.arrive(usbSnapshot(serial: "S\(n)", ports: [UInt8(n + 1)], address: UInt8(n + 2)))
        }
        let fastGot = await fast.wait(count: total)
        #expect(fastGot.events.map(\.seq) == Array(1...UInt64(total)))
        #expect(fastGot.allSatisfy { $0.missed == nil })
        // The overflow is reported where the missed events were: before the
        // next event that fits. Drain what the slow watch queued, then publish
        // one more (it fits now).
        let slowGot = record(slow)
        let queued = await slowGot.wait(count: 4)
        #expect(queued.count == 4 && queued.allSatisfy { $0.missed == nil },
                "the full queue should hold the 4 oldest events: \(queued)")
        usb.arrive(usbSnapshot(serial: "LAST", ports: [99], address: 99))
        let got = await slowGot.wait(timeout: .seconds(5)) { items, _ in
            items.last?.event?.interface.serialNumber == "LAST"
        }
        #expect(got, "the slow watch never reached the last event: \(slowGot.items.count) updates")
        let items = slowGot.items
        let missed = items.compactMap(\.missed).reduce(0, +)
        let events = items.events.filter { $0.interface.serialNumber != "LAST" }
        #expect(missed > 0, "no overflow reported")
        #expect(UInt64(events.count) + missed == UInt64(total), "events \(events.count) + missed \(missed)")
        #expect(events.count <= 4)
        // What it did get are the oldest, in order, and the overflow comes after them.
        #expect(events.map(\.seq) == Array(1...UInt64(events.count)))
        let overflowIndex = items.firstIndex { $0.missed != nil }
        #expect(overflowIndex == events.count)
    }

    // MARK: 9. Re-reported device

    @Test("a second arrival for the same key replaces the first")
    func rearrivalReplaces() async throws {
        let usb = FakeSource("usb")
        let h = try Harness([usb])
        let updates = record(h.manager.watch())
        let first = usbSnapshot(product: "Probe v1")
        var second = first
        second.product = "Probe v2"
        usb.arrive(first)
        usb.arrive(second)
        // And a re-report that changes the identity (a new serial, same node).
        var third = second
        third.serialNumber = "NEW"
        usb.arrive(third)
        let events = await updates.wait(count: 5).events
        #expect(events.map(\.event) == [.arrival, .removal, .arrival, .removal, .arrival])
        #expect(events.map(\.interface.product) == ["Probe v1", "Probe v1", "Probe v2", "Probe v2", "Probe v2"])
        #expect(events.last?.interface.symbolicLink.rawValue == "usb#vid_1209&pid_0001#NEW#\(usbDeviceGUIDText)")
        // Replaying the stream: never two present copies of a link.
        var present: Set<String> = []
        for e in events {
            switch e.event {
            case .arrival: #expect(present.insert(e.interface.symbolicLink.rawValue).inserted, "seq \(e.seq): twice present")
            case .removal: #expect(present.remove(e.interface.symbolicLink.rawValue) != nil, "seq \(e.seq): not present")
            }
        }
        #expect(await h.barrier(usb))
        let listed = h.manager.interfaces()
        #expect(listed.map(\.serialNumber) == ["NEW"])
        // Removal by the key removes the replacement.
        usb.remove(third)
        #expect(await updates.wait(count: 6).events.last?.event == .removal)
        #expect(await h.barrier(usb))
        #expect(h.manager.interfaces().isEmpty)
    }

    // MARK: 10. JSON

    static let instanceKeys = ["symbolicLink", "classGuid", "className", "kind", "vendorId", "productId",
                               "serialNumber", "interfaceNumber", "portChain", "devnode", "manufacturer",
                               "product", "present", "access", "leftBeforeReady", "remote"]

    static func keys(_ value: JSONValue) -> [String]? {
        guard case .object(let fields) = value else { return nil }
        return fields.map(\.0)
    }

    static func parse(_ text: String) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8))
        return try #require(object as? [String: Any], "not an object: \(text)")
    }

    @Test("DeviceInterface.json: fixed keys in order, hex ids, nulls")
    func interfaceJSON() async throws {
        let usb = FakeSource("usb")
        let h = try Harness([usb])
        usb.arrive(usbSnapshot(vid: 0xABCD, pid: 0x000A))
        #expect(await h.barrier(usb))
        let i = try #require(h.manager.interfaces().first)
        #expect(Self.keys(i.json) == Self.instanceKeys)
        let text = i.json.serialized()
        #expect(!text.contains("\n"))
        let object = try Self.parse(text)
        #expect(object["vendorId"] as? String == "abcd")
        #expect(object["productId"] as? String == "000a")
        #expect(object["symbolicLink"] as? String == "usb#vid_abcd&pid_000a#SER#\(usbDeviceGUIDText)")
        #expect(object["classGuid"] as? String == usbDeviceGUIDText)
        #expect(object["kind"] as? String == "usb")
        #expect(object["present"] as? Bool == true)
        #expect(object["access"] as? String == "ok")
        #expect(object["interfaceNumber"] is NSNull)

        // Unknown fields are explicit nulls.
        let bare = DeviceInterface(symbolicLink: try SymbolicLink(parsing: "hid#vid_0000&pid_ffff#@uhid%2F1#\(usbDeviceGUID)"), classGuid: usbDeviceGUID, className: nil, kind: .hid,
                                   vendorId: 0, productId: 0xFFFF, serialNumber: nil, interfaceNumber: nil,
                                   portChain: nil, devnode: nil, manufacturer: nil, product: nil,
                                   present: false, access: nil)
        let b = try Self.parse(bare.json.serialized())
        #expect(Set(b.keys) == Set(Self.instanceKeys))
        for key in ["className", "serialNumber", "interfaceNumber", "portChain", "devnode", "manufacturer",
                    "product", "access"] {
            #expect(b[key] is NSNull, "\(key) should be null")
        }
        #expect(b["vendorId"] as? String == "0000")
        #expect(b["productId"] as? String == "ffff")
        #expect(b["present"] as? Bool == false)
    }

    @Test("InterfaceEvent.json adds seq, event and an RFC 3339 UTC time")
    func eventJSON() async throws {
        let usb = FakeSource("usb")
        let h = try Harness([usb])
        let updates = record(h.manager.watch())
        usb.arrive(usbSnapshot())
        usb.remove(usbSnapshot())
        let events = await updates.wait(count: 2).events
        try #require(events.count == 2)
        for e in events {
            #expect(Self.keys(e.json) == Self.instanceKeys + ["seq", "event", "time"])
            let object = try Self.parse(e.json.serialized())
            #expect((object["seq"] as? NSNumber)?.uint64Value == e.seq)
            #expect(object["event"] as? String == e.event.rawValue)
            let time = try #require(object["time"] as? String)
            #expect(time.hasSuffix("Z"), "\(time)")
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            let parsed = try #require(formatter.date(from: time), "not RFC 3339 with fractional seconds: \(time)")
            #expect(abs(parsed.timeIntervalSince(e.time)) < 0.002, "\(time) vs \(e.time)")
        }
        #expect(events.map(\.event.rawValue) == ["arrival", "removal"])
        // A fixed instant formats exactly.
        #expect(rfc3339(Date(timeIntervalSince1970: 1_795_568_523.25)) == "2026-11-25T01:02:03.250Z")
    }

    @Test("a hostile serial yields valid one-line JSON that parses back to the same string")
    func hostileSerialJSON() async throws {
        let hostile = "q\"b\\s/\u{0}\u{1}\u{8}\u{c}\u{1f}\n\r\t\u{7f}\u{2028}\u{2029}é🙂%#&@~"
        let usb = FakeSource("usb")
        let h = try Harness([usb])
        usb.arrive(usbSnapshot(serial: hostile, product: "p\u{2028}\"x\""))
        #expect(await h.barrier(usb))
        let i = try #require(h.manager.interfaces().first)
        #expect(i.serialNumber == hostile)
        let text = i.json.serialized()
        #expect(!text.unicodeScalars.contains { $0.value < 0x20 || $0 == "\u{2028}" || $0 == "\u{2029}" },
                "raw control or line separator in: \(text.debugDescription)")
        let object = try Self.parse(text)
        #expect(object["serialNumber"] as? String == hostile)
        #expect(object["product"] as? String == "p\u{2028}\"x\"")
        // The link escapes the serial: no structure characters from it leak in.
        #expect(i.symbolicLink.rawValue.split(separator: "#").count == 4, "\(i.symbolicLink.rawValue)")
    }

    // MARK: 11. Stopping

    @Test("stop is idempotent and ends every watch")
    func stopEndsWatches() async throws {
        let usb = FakeSource("usb")
        let h = try Harness([usb])
        let updates = record(h.manager.watch())
        let calls = Recorder<WatchUpdate>()
        let token = h.manager.onChange { calls.append($0) }
        usb.arrive(usbSnapshot())
        #expect(await updates.wait(count: 1).count == 1)
        h.manager.stop()
        h.manager.stop()
        #expect(await updates.waitEnd(timeout: .seconds(5)), "the watch's for-await loop did not finish")
        #expect(updates.items.count == 1)
        #expect(usb.push(.arrived(usbSnapshot(serial: "AFTER"))) == false, "the source was not stopped")
        #expect(usb.stopCount.load(ordering: .relaxed) >= 1)
        // A watch begun after stop has an empty, finished stream.
        let late = record(h.manager.watch())
        #expect(await late.waitEnd(timeout: .seconds(5)))
        #expect(late.items.isEmpty)
        // Enumeration waiters do not hang on a stopped manager.
        #expect(await h.manager.waitUntilEnumerated(timeout: .seconds(5)))
        #expect(h.manager.interfaces().count == 1, "the last known state is still listed")
        token.cancel()
        #expect(calls.items.count <= 1)
    }
}

// MARK: - Helpers

/// Busy-waits about `n` iterations: a cheap way to shift two threads'
/// interleaving without sleeping.
@inline(never)
func spin(_ n: Int) {
    var x = 0
    for i in 0..<n { x &+= i; blackHole(x) }
}

@inline(never)
func blackHole(_ x: Int) { _ = x }

/// A shared counter (an `Atomic` cannot be captured by an escaping closure).
final class Counter: Sendable {
    let value = Atomic<Int>(0)
}

