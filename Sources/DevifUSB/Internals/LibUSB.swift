// The one file that calls libusb. Each wrapper maps a negative return code to
// a USBError once, so callers above see typed throws and Swift types only.
import CLibUSB
import DevifCore
import Glibc

/// A libusb pointer (context, device, handle) carried between threads. libusb
/// is thread-safe for these; ownership rules are the caller's.
struct LibUSBPointer: @unchecked Sendable, Hashable {
    let raw: OpaquePointer
    init(_ raw: OpaquePointer) { self.raw = raw }
}

enum LibUSB {
    @inline(__always)
    private static func check(_ rc: Int32, _ operation: String) throws(USBError) {
        if rc < 0 { throw USBError(libusbCode: rc, operation: operation) }
    }

    // MARK: Context and events

    /// `libusb_init`. With `noDeviceDiscovery`, libusb neither scans nor
    /// follows hotplug (process-wide and sticky in libusb 1.0.26: the option
    /// is a backend global); devices are then opened with `wrapSysDevice`.
    static func initContext(noDeviceDiscovery: Bool) throws(USBError) -> OpaquePointer {
        if noDeviceDiscovery {
            try check(devif_libusb_no_device_discovery(nil), "libusb_set_option(NO_DEVICE_DISCOVERY)")
        }
        var ctx: OpaquePointer?
        try check(libusb_init(&ctx), "libusb_init")
        guard let ctx else { throw USBError(libusbCode: LIBUSB_ERROR_OTHER.rawValue, operation: "libusb_init") }
        return ctx
    }

    static func exit(_ ctx: OpaquePointer) { libusb_exit(ctx) }

    /// One round of event handling, at most `milliseconds` long.
    /// `LIBUSB_ERROR_INTERRUPTED` (from `interruptEventHandler`) is not an error.
    static func handleEvents(_ ctx: OpaquePointer, milliseconds: Int) throws(USBError) {
        var tv = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
        let rc = libusb_handle_events_timeout_completed(ctx, &tv, nil)
        if rc == LIBUSB_ERROR_INTERRUPTED.rawValue { return }
        try check(rc, "libusb_handle_events_timeout_completed")
    }

    /// One round of event handling for a caller waiting on `completed`
    /// (set non-zero by the transfer's completion). Errors are not thrown:
    /// the caller loops until its transfer completes, and libusb's own
    /// errors here are transient (interrupted) or end every transfer.
    static func handleEvents(_ ctx: OpaquePointer, milliseconds: Int, completed: UnsafeMutablePointer<Int32>) {
        var tv = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
        _ = libusb_handle_events_timeout_completed(ctx, &tv, completed)
    }

    static func interruptEventHandler(_ ctx: OpaquePointer) { libusb_interrupt_event_handler(ctx) }

    static var hasHotplug: Bool { libusb_has_capability(UInt32(LIBUSB_CAP_HAS_HOTPLUG.rawValue)) != 0 }

    // MARK: Hotplug

    typealias HotplugCallback = @convention(c) (OpaquePointer?, OpaquePointer?, libusb_hotplug_event, UnsafeMutableRawPointer?) -> Int32

    /// Registers for arrivals and departures of every device. With
    /// `enumerate`, `callback` runs for each present device before this returns,
    /// on the calling thread.
    static func registerHotplug(_ ctx: OpaquePointer, enumerate: Bool, callback: HotplugCallback,
                                userData: UnsafeMutableRawPointer) throws(USBError) -> libusb_hotplug_callback_handle {
        var handle: libusb_hotplug_callback_handle = 0
        let events = Int32(LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED.rawValue | LIBUSB_HOTPLUG_EVENT_DEVICE_LEFT.rawValue)
        let flags = enumerate ? Int32(LIBUSB_HOTPLUG_ENUMERATE.rawValue) : 0
        try check(libusb_hotplug_register_callback(ctx, events, flags, LIBUSB_HOTPLUG_MATCH_ANY,
                                                   LIBUSB_HOTPLUG_MATCH_ANY, LIBUSB_HOTPLUG_MATCH_ANY,
                                                   callback, userData, &handle),
                  "libusb_hotplug_register_callback")
        return handle
    }

    static func deregisterHotplug(_ ctx: OpaquePointer, _ handle: libusb_hotplug_callback_handle) {
        libusb_hotplug_deregister_callback(ctx, handle)
    }

    // MARK: Devices (no I/O: libusb caches these at enumeration)

    static func ref(_ dev: OpaquePointer) { _ = libusb_ref_device(dev) }
    static func unref(_ dev: OpaquePointer) { libusb_unref_device(dev) }

    static func deviceDescriptor(_ dev: OpaquePointer) throws(USBError) -> libusb_device_descriptor {
        var d = libusb_device_descriptor()
        try check(libusb_get_device_descriptor(dev, &d), "libusb_get_device_descriptor")
        return d
    }

    /// Configuration descriptor `index` (0-based, not the value), handed to
    /// `body` and freed after.
    static func withConfigDescriptor<R>(_ dev: OpaquePointer, index: UInt8,
                                        _ body: (libusb_config_descriptor) -> R) throws(USBError) -> R {
        var cfg: UnsafeMutablePointer<libusb_config_descriptor>?
        try check(libusb_get_config_descriptor(dev, index, &cfg), "libusb_get_config_descriptor(\(index))")
        guard let cfg else { throw USBError(libusbCode: LIBUSB_ERROR_OTHER.rawValue, operation: "libusb_get_config_descriptor") }
        defer { libusb_free_config_descriptor(cfg) }
        return body(cfg.pointee)
    }

    static func busNumber(_ dev: OpaquePointer) -> UInt8 { libusb_get_bus_number(dev) }
    static func deviceAddress(_ dev: OpaquePointer) -> UInt8 { libusb_get_device_address(dev) }

    /// Hub ports from the root down (USB allows 7 tiers); empty for a root hub.
    static func portNumbers(_ dev: OpaquePointer) throws(USBError) -> [UInt8] {
        var ports = [UInt8](repeating: 0, count: 8)
        let n = libusb_get_port_numbers(dev, &ports, Int32(ports.count))
        try check(n, "libusb_get_port_numbers")
        return Array(ports.prefix(Int(n)))
    }

    // MARK: Handles

    static func open(_ dev: OpaquePointer) throws(USBError) -> OpaquePointer {
        var h: OpaquePointer?
        try check(libusb_open(dev, &h), "libusb_open")
        guard let h else { throw USBError(libusbCode: LIBUSB_ERROR_OTHER.rawValue, operation: "libusb_open") }
        return h
    }

    /// Wraps an open usbfs file descriptor (the no-discovery mode's open).
    /// libusb does not take the descriptor: close it after `close(handle)`.
    static func wrapSysDevice(_ ctx: OpaquePointer, fd: Int32) throws(USBError) -> OpaquePointer {
        var h: OpaquePointer?
        try check(libusb_wrap_sys_device(ctx, intptr_t(fd), &h), "libusb_wrap_sys_device")
        guard let h else { throw USBError(libusbCode: LIBUSB_ERROR_OTHER.rawValue, operation: "libusb_wrap_sys_device") }
        return h
    }

    static func close(_ handle: OpaquePointer) { libusb_close(handle) }

    // MARK: Claiming and endpoints (handles)

    /// Lets libusb detach a bound kernel driver on claim and re-attach it on
    /// release. `LIBUSB_ERROR_NOT_SUPPORTED` means there is nothing to detach
    /// on this platform: not an error.
    static func setAutoDetachKernelDriver(_ handle: OpaquePointer, _ enable: Bool) throws(USBError) {
        let rc = libusb_set_auto_detach_kernel_driver(handle, enable ? 1 : 0)
        if rc == LIBUSB_ERROR_NOT_SUPPORTED.rawValue { return }
        try check(rc, "libusb_set_auto_detach_kernel_driver")
    }

    static func claimInterface(_ handle: OpaquePointer, _ number: Int32) throws(USBError) {
        try check(libusb_claim_interface(handle, number), "libusb_claim_interface(\(number))")
    }

    static func releaseInterface(_ handle: OpaquePointer, _ number: Int32) throws(USBError) {
        try check(libusb_release_interface(handle, number), "libusb_release_interface(\(number))")
    }

    static func setAlternateSetting(_ handle: OpaquePointer, interface: Int32, setting: Int32) throws(USBError) {
        try check(libusb_set_interface_alt_setting(handle, interface, setting),
                  "libusb_set_interface_alt_setting(\(interface), \(setting))")
    }

    static func clearHalt(_ handle: OpaquePointer, endpoint: UInt8) throws(USBError) {
        try check(libusb_clear_halt(handle, endpoint), "libusb_clear_halt(0x\(hex2(endpoint)))")
    }

    /// The device behind a handle (no reference taken).
    static func device(of handle: OpaquePointer) -> OpaquePointer? { libusb_get_device(handle) }

    /// The endpoints of the active configuration (every alternate setting),
    /// as (address, bmAttributes, wMaxPacketSize, interface number).
    static func activeConfigEndpoints(_ dev: OpaquePointer) throws(USBError)
        -> [(address: UInt8, attributes: UInt8, maxPacketSize: UInt16, interface: Int)] {
        var cfg: UnsafeMutablePointer<libusb_config_descriptor>?
        try check(libusb_get_active_config_descriptor(dev, &cfg), "libusb_get_active_config_descriptor")
        guard let cfg else { return [] }
        defer { libusb_free_config_descriptor(cfg) }
        var out: [(UInt8, UInt8, UInt16, Int)] = []
        let c = cfg.pointee
        for i in 0..<Int(c.bNumInterfaces) {
            let iface = c.interface[i]
            for a in 0..<Int(max(0, iface.num_altsetting)) {
                let alt = iface.altsetting[a]
                for e in 0..<Int(alt.bNumEndpoints) {
                    let ep = alt.endpoint[e]
                    out.append((ep.bEndpointAddress, ep.bmAttributes, ep.wMaxPacketSize, Int(alt.bInterfaceNumber)))
                }
            }
        }
        return out
    }

    // MARK: Asynchronous transfers

    typealias TransferCallback = @convention(c) (UnsafeMutablePointer<libusb_transfer>?) -> Void

    static func allocTransfer() -> UnsafeMutablePointer<libusb_transfer>? { libusb_alloc_transfer(0) }

    static func freeTransfer(_ t: UnsafeMutablePointer<libusb_transfer>) { libusb_free_transfer(t) }

    /// Fills a bulk, interrupt or control transfer (for control, `buffer`
    /// starts with the 8-byte setup packet).
    static func fillTransfer(_ t: UnsafeMutablePointer<libusb_transfer>, handle: OpaquePointer, type: UInt8,
                             endpoint: UInt8, buffer: UnsafeMutablePointer<UInt8>, length: Int32,
                             timeoutMilliseconds: UInt32, zeroLengthPacket: Bool,
                             callback: TransferCallback, userData: UnsafeMutableRawPointer) {
        t.pointee.dev_handle = handle
        t.pointee.flags = zeroLengthPacket ? UInt8(LIBUSB_TRANSFER_ADD_ZERO_PACKET.rawValue) : 0
        t.pointee.endpoint = endpoint
        t.pointee.type = type
        t.pointee.timeout = timeoutMilliseconds
        t.pointee.length = length
        t.pointee.actual_length = 0
        t.pointee.buffer = buffer
        t.pointee.callback = callback
        t.pointee.user_data = userData
        t.pointee.num_iso_packets = 0
    }

    static func submitTransfer(_ t: UnsafeMutablePointer<libusb_transfer>) throws(USBError) {
        try check(libusb_submit_transfer(t), "libusb_submit_transfer")
    }

    /// Asks libusb to cancel; the completion still comes (status CANCELLED,
    /// or whatever it finished with first). NOT_FOUND: already done.
    static func cancelTransfer(_ t: UnsafeMutablePointer<libusb_transfer>) {
        _ = libusb_cancel_transfer(t)
    }

    static var transferTypeBulk: UInt8 { UInt8(LIBUSB_TRANSFER_TYPE_BULK.rawValue) }
    static var transferTypeInterrupt: UInt8 { UInt8(LIBUSB_TRANSFER_TYPE_INTERRUPT.rawValue) }
    static var transferTypeControl: UInt8 { UInt8(LIBUSB_TRANSFER_TYPE_CONTROL.rawValue) }

    /// A control transfer into `buffer`; returns the bytes received.
    static func controlIn(_ handle: OpaquePointer, requestType: UInt8, request: UInt8, value: UInt16,
                          index: UInt16, buffer: inout [UInt8], timeoutMilliseconds: UInt32) throws(USBError) -> Int {
        let count = UInt16(min(buffer.count, Int(UInt16.max)))
        let n = buffer.withUnsafeMutableBufferPointer {
            libusb_control_transfer(handle, requestType, request, value, index, $0.baseAddress, count, timeoutMilliseconds)
        }
        try check(n, "libusb_control_transfer")
        return Int(n)
    }
}
