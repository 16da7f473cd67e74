// README's Swift code blocks, verbatim inside functions (their `import`
// lines at the top of this file), so the build proves they compile against
// the package as a user sees it. Scripts/consumer checks that every block is
// here; it fails, saying which, when README changes without this file.
// Compiled, never run.
import Devif

func readmeLibrary() async throws {
    let manager = try DeviceManager()          // catalog, registry, USB and HID sources
    manager.start()                            // the sources run on their own threads
    _ = await manager.waitUntilEnumerated(timeout: .seconds(10))

    // The present HID instances, then every change, with no gap between the two.
    let watch = manager.watch(InterfaceFilter(classGuid: WellKnownClass.hid.guid))
    for i in watch.snapshot { print("present", i.symbolicLink, i.devnode ?? "-") }
    for await update in watch.updates {
        switch update {
        case .event(let e): print(e.seq, e.event, e.interface.symbolicLink)
        case .overflow(let missed): print("fell behind by \(missed); resync with manager.interfaces(...)")
        }
    }
}

func readmeHandles(_ manager: DeviceManager, payload: [UInt8],
                   consume: @escaping @Sendable (UnsafeRawBufferPointer) -> Void) async throws {
    // USB: a Loopback device's instance; transfers claim the endpoint's interface.
    let usb = try manager.openUSB("usb#vid_1209&pid_0e12#EX-LOOP-1#{6f3c2d1e-0b7a-4c55-9a61-3d2c1b0a9f01}")
    defer { usb.close() }
    try await usb.write(endpoint: .out(2), Array("hello".utf8))        // or endpoint: 0x02
    let echo = try await usb.read(endpoint: .in(1), length: 4096, timeout: .seconds(1))
    let device = try await usb.controlIn(.getDescriptor(type: 1), length: 18)
    try await usb.controlOut(.vendor(request: 0x01, value: 2), data: [1, 2, 3])  // direction from the call
    // Blocking, into and from your own memory: once an endpoint has been used at
    // a size, a round trip allocates nothing (libusb's own URB array aside).
    var buffer = [UInt8](repeating: 0, count: 4096)
    let sent = try Array("hello".utf8).withUnsafeBytes { try usb.write(endpoint: 0x02, from: $0) }
    let got = try buffer.withUnsafeMutableBytes { try usb.read(endpoint: 0x81, into: $0, timeout: .seconds(1)) }
    var status = [UInt8](repeating: 0, count: 2)                     // control requests too
    _ = try status.withUnsafeMutableBytes { try usb.controlIn(.getStatus(), into: $0) }
    // An IN stream keeps transfers in flight; it is an AsyncSequence of chunks.
    let stream = try usb.inStream(endpoint: 0x81, transferSize: 16384, transfers: 8)
    for try await chunk in stream { print(chunk.count) }  // ends after stop() (from anywhere); throws on removal
    await stream.wait()        // every transfer back: the endpoint is free again
    // Read where the transfers complete (devif's event thread): no thread wake-up
    // per chunk, the fast way to read a stream as an AsyncSequence.
    let fast = try usb.inStream(endpoint: 0x81)
    let reading = Task(executorPreference: USBHandle.completionExecutor) {
        for try await chunk in fast { chunk.withUnsafeBytes { consume($0) } }  // short: it holds up every transfer
    }
    fast.stop(); try await reading.value                  // the loop ends after stop()
    // An OUT stream keeps transfers queued; writes wait only while all are in flight.
    let out = try usb.outStream(endpoint: 0x02, transferSize: 16384, transfers: 8)
    try await out.write(payload)
    try await out.write(count: 4096) { region, offset in region.initializeMemory(as: UInt8.self, repeating: 0) }  // in place
    let total = try await out.finish()   // the rest, a zero-length packet if the data ends on a packet boundary

    // Push mode, the fastest way to stream: the handler sees each transfer's bytes
    // on devif's event thread (no copy, no thread hop) and it is resubmitted at once.
    let reader = try usb.startReading(endpoint: 0x81, transferSize: 16384, transfers: 8) { bytes in
        consume(bytes)                                   // do not block here
        return .continue                                 // or .stop
    }
    let why = await reader.wait()                   // nil after stop(), else e.g. .deviceRemoved

    // HID: reports, and a stream of input reports every subscriber gets in full.
    let hid = try manager.openHID("hid#vid_1209&pid_0e11&mi_00#EX-HID-1#{4d1e55b2-f16f-11cf-88cb-001111000030}")
    try hid.write(outputReport: [0] + payload)            // report ID 0: unnumbered
    let report = try hid.read(timeout: .milliseconds(500))
    for await delivery in hid.inputReports() { /* .event(.report(r)), .event(.ended(error)), or .overflow(missed:) */ }

    // Removal: I/O in progress throws HandleError.deviceRemoved; holders are told.
    for await notice in usb.removalNotices() { print(notice) }   // .pending, then .complete
}
