// The first lab tests: the raw stack (libusb, hidapi, hidraw, uhid, udev) seen
// from Swift against real gadgets, before any devif logic. If these fail, the
// lab itself is broken, not devif.
import CHIDAPI
import CLibUSB
import Foundation
import Synchronization

/// A libusb context with its own event thread, as devif's USB source will have.
final class RawUSB: @unchecked Sendable {  // ctx is used from the event thread and the test; libusb is thread-safe.
    let ctx: OpaquePointer
    private let running = Atomic<Bool>(true)
    private var thread: Thread?

    init() throws {
        var c: OpaquePointer?
        let rc = libusb_init(&c)
        guard rc == 0, let c else { throw LabFailure("libusb_init failed: \(rc)") }
        ctx = c
    }

    func startEventThread() {
        let t = Thread { [self] in
            var tv = timeval(tv_sec: 0, tv_usec: 100_000)
            while running.load(ordering: .relaxed) {
                libusb_handle_events_timeout_completed(ctx, &tv, nil)
            }
        }
        t.start()
        thread = t
    }

    deinit {
        running.store(false, ordering: .relaxed)
        // libusb_exit must not race the event thread: wake and wait for it.
        libusb_interrupt_event_handler(ctx)
        while thread?.isFinished == false { usleep(1000) }
        libusb_exit(ctx)
    }

    struct Device {
        var vid: UInt16, pid: UInt16, bus: UInt8, address: UInt8
        var ports: [UInt8]
        var serial: String?, manufacturer: String?, product: String?
        var endpoints: [(interface: Int, address: UInt8, type: UInt8, maxPacket: UInt16)]
    }

    /// Every device libusb sees with this VID/PID, with strings read through a real open.
    func devices(vid: UInt16, pid: UInt16) throws -> [Device] {
        var list: UnsafeMutablePointer<OpaquePointer?>?
        let n = libusb_get_device_list(ctx, &list)
        guard n >= 0, let list else { throw LabFailure("libusb_get_device_list failed: \(n)") }
        defer { libusb_free_device_list(list, 1) }
        var found: [Device] = []
        for i in 0..<n {
            guard let dev = list[i] else { continue }
            var d = libusb_device_descriptor()
            guard libusb_get_device_descriptor(dev, &d) == 0, d.idVendor == vid, d.idProduct == pid else { continue }
            var ports = [UInt8](repeating: 0, count: 8)
            let np = libusb_get_port_numbers(dev, &ports, Int32(ports.count))
            var device = Device(vid: vid, pid: pid, bus: libusb_get_bus_number(dev),
                                address: libusb_get_device_address(dev),
                                ports: Array(ports.prefix(Int(max(np, 0)))),
                                serial: nil, manufacturer: nil, product: nil, endpoints: [])
            var cfg: UnsafeMutablePointer<libusb_config_descriptor>?
            if libusb_get_active_config_descriptor(dev, &cfg) == 0, let cfg {
                defer { libusb_free_config_descriptor(cfg) }
                for ii in 0..<Int(cfg.pointee.bNumInterfaces) {
                    let intf = cfg.pointee.interface[ii]
                    for ai in 0..<Int(intf.num_altsetting) {
                        let alt = intf.altsetting[ai]
                        for ei in 0..<Int(alt.bNumEndpoints) {
                            let ep = alt.endpoint[ei]
                            device.endpoints.append((Int(alt.bInterfaceNumber), ep.bEndpointAddress,
                                                     ep.bmAttributes & 3, ep.wMaxPacketSize))
                        }
                    }
                }
            }
            var h: OpaquePointer?
            let orc = libusb_open(dev, &h)
            guard orc == 0, let h else { throw LabFailure("libusb_open failed: \(orc)") }
            defer { libusb_close(h) }
            func string(_ index: UInt8) -> String? {
                guard index != 0 else { return nil }
                var buf = [UInt8](repeating: 0, count: 256)
                let r = libusb_get_string_descriptor_ascii(h, index, &buf, Int32(buf.count))
                return r >= 0 ? String(decoding: buf.prefix(Int(r)), as: UTF8.self) : nil
            }
            device.serial = string(d.iSerialNumber)
            device.manufacturer = string(d.iManufacturer)
            device.product = string(d.iProduct)
            found.append(device)
        }
        return found
    }
}

enum HotplugEvent: Sendable, Equatable { case arrived(bus: UInt8, address: UInt8), left(bus: UInt8, address: UInt8) }

/// Registers a libusb hotplug callback for VID/PID that posts into an inbox.
/// Only hands off: libusb forbids synchronous calls inside the callback.
func registerHotplug(_ usb: RawUSB, vid: UInt16, pid: UInt16, inbox: Inbox<HotplugEvent>) throws -> Int32 {
    let box = Unmanaged.passRetained(inbox)  // released never: lives as long as the test process
    var handle: libusb_hotplug_callback_handle = 0
    let events = Int32(LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED.rawValue | LIBUSB_HOTPLUG_EVENT_DEVICE_LEFT.rawValue)
    let rc = libusb_hotplug_register_callback(
        usb.ctx, events, 0, Int32(vid), Int32(pid), LIBUSB_HOTPLUG_MATCH_ANY,
        { _, dev, event, user in
            let inbox = Unmanaged<Inbox<HotplugEvent>>.fromOpaque(user!).takeUnretainedValue()
            let bus = libusb_get_bus_number(dev), addr = libusb_get_device_address(dev)
            inbox.post(event == LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED ? .arrived(bus: bus, address: addr)
                                                                    : .left(bus: bus, address: addr))
            return 0
        }, box.toOpaque(), &handle)
    guard rc == 0 else { throw LabFailure("libusb_hotplug_register_callback failed: \(rc)") }
    return handle
}

/// hidapi's view of one HID device.
struct HIDInfo: Sendable {
    var path: String, vid: UInt16, pid: UInt16, serial: String?, product: String?
    var usagePage: UInt16, usage: UInt16, interface: Int32, bus: UInt32
}

func wideString(_ p: UnsafeMutablePointer<wchar_t>?) -> String? {
    guard let p else { return nil }
    var scalars = String.UnicodeScalarView()
    var i = 0
    while p[i] != 0 {
        scalars.append(Unicode.Scalar(UInt32(bitPattern: p[i])) ?? "\u{FFFD}")
        i += 1
    }
    return String(scalars)
}

func hidEnumerate(vid: UInt16, pid: UInt16) -> [HIDInfo] {
    guard let head = hid_enumerate(vid, pid) else { return [] }
    defer { hid_free_enumeration(head) }
    var out: [HIDInfo] = []
    var cur: UnsafeMutablePointer<hid_device_info>? = head
    while let c = cur {
        let i = c.pointee
        out.append(HIDInfo(path: String(cString: i.path), vid: i.vendor_id, pid: i.product_id,
                           serial: wideString(i.serial_number), product: wideString(i.product_string),
                           usagePage: i.usage_page, usage: i.usage, interface: i.interface_number,
                           bus: i.bus_type.rawValue))
        cur = i.next
    }
    return out
}

/// Waits (bounded) until hidapi enumerates a device with this VID/PID.
/// hidraw nodes appear through udev after the USB device itself.
func waitForHID(vid: UInt16, pid: UInt16, within seconds: Double = 15) async throws -> [HIDInfo] {
    try await withDeadline(seconds, "hidapi to enumerate \(hex(vid)):\(hex(pid))") {
        while true {
            let found = hidEnumerate(vid: vid, pid: pid)
            if !found.isEmpty { return found }
            try await Task.sleep(for: .milliseconds(50))  // polling a listing, not synchronising
        }
    }
}

func hex(_ v: UInt16) -> String { String(format: "%04x", v) }

/// One output report out through hidapi, the device side echoes it, one input report back.
func hidEcho(path: String, payload: [UInt8]) throws -> [UInt8] {
    guard let dev = hid_open_path(path) else { throw LabFailure("hid_open_path(\(path)) failed") }
    defer { hid_close(dev) }
    let out = [0] + payload  // report ID 0: the descriptor has no report IDs
    let w = out.withUnsafeBufferPointer { hid_write(dev, $0.baseAddress, $0.count) }
    try expect(w == out.count, "hid_write wrote \(w) of \(out.count) bytes")
    var buf = [UInt8](repeating: 0, count: payload.count + 1)
    let r = buf.withUnsafeMutableBufferPointer { hid_read_timeout(dev, $0.baseAddress, $0.count, 3000) }
    try expect(r > 0, "hid_read_timeout returned \(r) (0 = no echo within 3 s)")
    return Array(buf.prefix(Int(r)))
}

func registerStackTests(_ r: inout LabRunner) {
    r.add("stack: libusb enumerates a Loopback gadget with its descriptors") {
        try Devlab.run(["create", "loop1", "loopback", "--vid", "1209", "--pid", "0a01",
                        "--serial", "LAB-LOOP-1", "--manufacturer", "devif lab", "--product", "Loopback"])
        let plugged = try Devlab.plug("loop1")
        let usb = try RawUSB()
        let devs = try usb.devices(vid: 0x1209, pid: 0x0a01)
        try expectEqual(devs.count, 1, "devices with 1209:0a01")
        let d = devs[0]
        try expectEqual(d.serial, "LAB-LOOP-1", "serial")
        try expectEqual(d.manufacturer, "devif lab", "manufacturer")
        try expectEqual(d.product, "Loopback", "product")
        if let bus = plugged.busnum { try expectEqual(Int(d.bus), bus, "bus number (libusb vs sysfs)") }
        let bulk = d.endpoints.filter { $0.type == 2 }
        try expect(bulk.contains { $0.address & 0x80 != 0 } && bulk.contains { $0.address & 0x80 == 0 },
                   "a bulk IN and a bulk OUT endpoint, got \(d.endpoints.map { String($0.address, radix: 16) })")
    }

    r.add("stack: a libusb hotplug callback sees plug, unplug and replug") {
        try Devlab.run(["create", "hot1", "sourcesink", "--vid", "1209", "--pid", "0a02", "--serial", "LAB-HOT-1"])
        let usb = try RawUSB()
        let inbox = Inbox<HotplugEvent>()
        _ = try registerHotplug(usb, vid: 0x1209, pid: 0x0a02, inbox: inbox)
        usb.startEventThread()
        for round in 1...2 {
            try Devlab.plug("hot1")
            let a = try await inbox.next(within: 15, "hotplug arrival #\(round)")
            guard case .arrived(let bus, let addr) = a else { throw LabFailure("expected arrival #\(round), got \(a)") }
            try Devlab.unplug("hot1")
            let l = try await inbox.next(within: 15, "hotplug removal #\(round)")
            try expectEqual(l, .left(bus: bus, address: addr), "removal #\(round)")
        }
    }

    r.add("stack: hidapi enumerates a HID gadget and echoes a 64-byte report") {
        try Devlab.run(["create", "hid1", "hid", "--vid", "1209", "--pid", "0a03", "--serial", "LAB-HID-1",
                        "--product", "Echo HID", "--hid-mode", "echo"])
        _ = try Devlab.plug("hid1")
        let found = try await waitForHID(vid: 0x1209, pid: 0x0a03)
        try expectEqual(found.count, 1, "hidapi devices with 1209:0a03")
        let h = found[0]
        try expectEqual(h.serial, "LAB-HID-1", "serial")
        try expectEqual(h.usagePage, 0xFF00, "usage page")
        try expectEqual(h.bus, HID_API_BUS_USB.rawValue, "bus type")
        try expectEqual(h.interface, 0, "interface number")
        let payload = (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        let back = try hidEcho(path: h.path, payload: payload)
        try expectEqual(back, payload, "echoed report")
    }

    // hidapi 0.13 lists only USB, Bluetooth, I2C and SPI buses: a uhid device
    // claiming BUS_VIRTUAL is invisible to it (devif's HID source covers that
    // case from sysfs), so this stack test's uhid device says it is Bluetooth.
    r.add("stack: hidapi enumerates a uhid device (not on USB) and echoes through it") {
        try Devlab.run(["create", "uhid1", "uhid", "--vid", "1209", "--pid", "0a04", "--serial", "LAB-UHID-1",
                        "--product", "Virtual HID", "--hid-mode", "echo", "--bus", "bluetooth"])
        _ = try Devlab.plug("uhid1")
        let found = try await waitForHID(vid: 0x1209, pid: 0x0a04)
        try expectEqual(found.count, 1, "hidapi devices with 1209:0a04")
        try expectEqual(found[0].bus, HID_API_BUS_BLUETOOTH.rawValue, "bus type of the uhid device")
        try expectEqual(found[0].serial, "LAB-UHID-1", "uhid serial (uniq)")
        let payload = [UInt8](repeating: 0x5A, count: 64)
        try expectEqual(try hidEcho(path: found[0].path, payload: payload), payload, "echoed report")
    }
}
