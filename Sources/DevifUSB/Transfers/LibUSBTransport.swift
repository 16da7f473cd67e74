import CLibUSB
import DevifCore
import DevifLinux
import Glibc

/// The production transport: a usbfs node opened by path and handed to
/// libusb (`libusb_wrap_sys_device`), so it works whether or not libusb
/// itself discovers devices. Transfers complete on the shared context's
/// event thread, or on a thread pumping a synchronous transfer.
final class LibUSBTransport: USBTransport, @unchecked Sendable {  // immutable; libusb is thread-safe
    let fd: Int32
    let handle: OpaquePointer
    let context: USBContext

    /// Opens `path` read-write and wraps it.
    /// - Throws: ``USBError/access`` without permission, ``USBError/deviceRemoved``
    ///   if the node is gone or leaves as it is opened.
    init(path: String, context: USBContext) throws(USBError) {
        let fd: Int32
        do {
            fd = try Syscalls.open(path, O_RDWR | O_CLOEXEC)
        } catch {
            switch error.code {
            case EACCES, EPERM: throw USBError(errno: error.code, like: LIBUSB_ERROR_ACCESS.rawValue, operation: "open(\(path))")
            case ENOENT, ENODEV, ENXIO: throw USBError(errno: error.code, like: LIBUSB_ERROR_NO_DEVICE.rawValue, operation: "open(\(path))")
            default: throw USBError(errno: error.code, like: LIBUSB_ERROR_IO.rawValue, operation: "open(\(path))")
            }
        }
        do {
            handle = try LibUSB.wrapSysDevice(context.raw, fd: fd)
        } catch {
            // A device leaving as it is opened fails here with an I/O error.
            let gone = (error == .io || error == .noDevice) && nodeHungUp(fd)
            Syscalls.close(fd)
            if gone { throw USBError.removed("libusb_wrap_sys_device(\(path))") }
            throw error.naming("libusb_wrap_sys_device(\(path))")
        }
        self.fd = fd
        self.context = context
        try? LibUSB.setAutoDetachKernelDriver(handle, true)
    }

    func makeNative() throws(USBError) -> UnsafeMutableRawPointer? {
        guard let t = LibUSB.allocTransfer() else {
            throw USBError(libusbCode: LIBUSB_ERROR_NO_MEM.rawValue, operation: "libusb_alloc_transfer")
        }
        return UnsafeMutableRawPointer(t)
    }

    func freeNative(_ native: UnsafeMutableRawPointer?) {
        if let native { LibUSB.freeTransfer(native.assumingMemoryBound(to: libusb_transfer.self)) }
    }

    func submit(_ box: TransferBox, type: USBEndpoint.TransferType, endpoint: UInt8, length: Int,
                timeoutMilliseconds: UInt32, zeroLengthPacket: Bool) throws(USBError) {
        let t = box.native!.assumingMemoryBound(to: libusb_transfer.self)
        LibUSB.fillTransfer(t, handle: handle, type: type.rawValue, endpoint: endpoint,
                            buffer: box.buffer.baseAddress!.assumingMemoryBound(to: UInt8.self),
                            length: Int32(length), timeoutMilliseconds: timeoutMilliseconds,
                            zeroLengthPacket: zeroLengthPacket, callback: libusbTransferDone, userData: box.opaque)
        try LibUSB.submitTransfer(t)
    }

    func cancel(_ box: TransferBox) {
        LibUSB.cancelTransfer(box.native!.assumingMemoryBound(to: libusb_transfer.self))
    }

    var isEventThread: Bool { context.isEventThread }
    func beginAsync() { context.beginAsync() }
    func endAsync() { context.endAsync() }
    func pump(until waiter: TransferWaiter) { context.pump(until: waiter) }
    func hungUp() -> Bool { nodeHungUp(fd) }

    func endpointDescriptors() -> [(endpoint: USBEndpoint, interface: Int)] {
        guard let dev = LibUSB.device(of: handle), let all = try? LibUSB.activeConfigEndpoints(dev) else { return [] }
        return all.map { (USBEndpoint(address: $0.address, attributes: $0.attributes,
                                             maxPacketSize: $0.maxPacketSize, interval: 0), $0.interface) }
    }

    func claim(interface: Int) throws(USBError) { try LibUSB.claimInterface(handle, Int32(interface)) }
    func release(interface: Int) throws(USBError) { try LibUSB.releaseInterface(handle, Int32(interface)) }
    func setAlternateSetting(_ setting: Int, interface: Int) throws(USBError) {
        try LibUSB.setAlternateSetting(handle, interface: Int32(interface), setting: Int32(setting))
    }
    func clearHalt(endpoint: UInt8) throws(USBError) { try LibUSB.clearHalt(handle, endpoint: endpoint) }

    func close() {
        LibUSB.close(handle)
        Syscalls.close(fd)
    }
}

/// libusb's completion callback, on the event thread or a pumping one.
private let libusbTransferDone: LibUSB.TransferCallback = { transfer in
    guard let t = transfer?.pointee, let userData = t.user_data else { return }
    let status: TransferStatus = switch t.status {
    case LIBUSB_TRANSFER_COMPLETED: .completed
    case LIBUSB_TRANSFER_TIMED_OUT: .timedOut
    case LIBUSB_TRANSFER_CANCELLED: .cancelled
    case LIBUSB_TRANSFER_STALL: .stall
    case LIBUSB_TRANSFER_NO_DEVICE: .noDevice
    case LIBUSB_TRANSFER_OVERFLOW: .overflow
    default: .failed
    }
    TransferBox.transportCompleted(userData, status: status, length: Int(max(0, min(t.actual_length, t.length))))
}
