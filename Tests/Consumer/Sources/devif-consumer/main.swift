// devif-consumer: what a program built on devif does first. It lists,
// watches and opens a handle, through `import Devif` alone.
//
//   devif-consumer list                       present instances, one per line
//   devif-consumer watch COUNT SECONDS        the snapshot, then COUNT changes
//   devif-consumer loopback LINK BYTES        bulk OUT then IN on a Loopback gadget
//   devif-consumer hid-echo LINK              an output report, echoed as input
//
// Every command prints JSON-free lines a test can read and exits 0 on success,
// 1 with a message on stderr otherwise. The registry is kept in memory.
import Devif
import Foundation

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data(("devif-consumer: " + message + "\n").utf8))
    exit(1)
}

/// One line on stdout, written at once (a test reads them as they come).
func say(_ items: Any...) {
    FileHandle.standardOutput.write(Data((items.map { "\($0)" }.joined(separator: " ") + "\n").utf8))
}

func startedManager() async -> DeviceManager {
    var options = DeviceManager.Options()
    options.inMemoryRegistry = true
    let manager: DeviceManager
    do { manager = try DeviceManager(options: options) } catch { fail("\(error)") }
    manager.start()
    guard await manager.waitUntilEnumerated(timeout: .seconds(30)) else { fail("enumeration took over 30 s") }
    return manager
}

let args = Array(CommandLine.arguments.dropFirst())
switch args.first {
case "list":
    let manager = await startedManager()
    for i in manager.interfaces() {
        say("instance", i.className ?? i.classGuid.description, i.symbolicLink, i.devnode ?? "-")
    }
    manager.stop()

case "watch":
    guard args.count == 3, let count = Int(args[1]), let seconds = Double(args[2]) else { fail("usage: watch COUNT SECONDS") }
    let manager = await startedManager()
    let watch = manager.watch(InterfaceFilter(vendorId: 0x1209))
    for i in watch.snapshot { say("present", i.symbolicLink) }
    say("watching")  // the test plugs its gadget once it reads this line
    let timer = Task {
        try? await Task.sleep(for: .seconds(seconds))
        watch.cancel()
    }
    var seen = 0
    for await update in watch.updates {
        switch update {
        case .event(let e): say(e.event.rawValue, e.seq, e.interface.symbolicLink)
        case .overflow(let missed): say("overflow", missed)
        }
        seen += 1
        if seen == count { break }
    }
    timer.cancel()
    manager.stop()
    if seen < count { fail("saw \(seen) of \(count) changes within \(seconds) s") }

case "loopback":
    guard args.count == 3, let bytes = Int(args[2]), bytes > 0 else { fail("usage: loopback LINK BYTES") }
    let manager = await startedManager()
    do {
        let usb = try manager.openUSB(args[1])
        defer { usb.close() }
        guard let out = usb.endpoints.first(where: { !$0.isIn && $0.kind == .bulk }),
              let inp = usb.endpoints.first(where: { $0.isIn && $0.kind == .bulk }) else {
            fail("no bulk endpoint pair in \(usb.endpoints)")
        }
        let endpoint: USBHandle.Endpoint = inp  // the backend's types have names in Devif
        let data = (0..<bytes).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        try await usb.write(endpoint: out.address, data)
        var back: [UInt8] = []
        while back.count < data.count {
            back += try await usb.read(endpoint: endpoint.address, length: 4096, timeout: .seconds(5))
        }
        let descriptor = try await usb.controlIn(.getDescriptor(type: 1), length: 18)
        say("loopback", back == data ? "ok" : "MISMATCH", back.count, "device-descriptor", descriptor.count)
        if back != data { exit(1) }
    } catch {
        fail("\(error)")
    }
    manager.stop()

case "hid-echo":
    guard args.count == 2 else { fail("usage: hid-echo LINK") }
    let manager = await startedManager()
    do {
        let hid = try manager.openHID(args[1])
        defer { hid.close() }
        let payload = (0..<64).map { UInt8($0 + 0x40) }  // the lab's echo devices have 64-byte reports
        try hid.write(outputReport: [0] + payload)
        let report = try hid.read(timeout: .seconds(5))
        say("hid-echo", report == payload ? "ok" : "MISMATCH", report.count)
        if report != payload { exit(1) }
    } catch {
        fail("\(error)")
    }
    manager.stop()

default:
    fail("usage: devif-consumer list | watch COUNT SECONDS | loopback LINK BYTES | hid-echo LINK")
}
