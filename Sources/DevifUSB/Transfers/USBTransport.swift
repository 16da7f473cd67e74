import DevifCore

/// What carries a handle's transfers to the device: libusb on usbfs in
/// production (``LibUSBTransport``), a fake that a unit test steps by hand
/// elsewhere. Everything above it (the device's phases, single transfers,
/// streams, readers, OUT streams) is written once against this protocol, so
/// its state machines run, and are tested, without a device.
///
/// The contract, which the fake keeps too:
/// - ``submit(_:type:endpoint:length:timeoutMilliseconds:zeroLengthPacket:)``
///   either throws (nothing was submitted) or later reports the transfer's
///   end exactly once, through ``TransferBox/transportCompleted(_:status:length:)``,
///   on any thread, never from inside `submit`.
/// - ``cancel(_:)`` only asks: the end is still reported, once.
package protocol USBTransport: AnyObject, Sendable {
    /// Per-transfer memory the transport needs (libusb: a `libusb_transfer`),
    /// made once per ``TransferBox`` and freed by ``freeNative(_:)``.
    func makeNative() throws(USBError) -> UnsafeMutableRawPointer?
    func freeNative(_ native: UnsafeMutableRawPointer?)

    /// Hands `box` (its first `length` bytes; for control transfers the 8-byte
    /// setup packet first) to the device. `box.opaque` identifies it in the
    /// report of its end.
    func submit(_ box: TransferBox, type: USBEndpoint.TransferType, endpoint: UInt8, length: Int,
                timeoutMilliseconds: UInt32, zeroLengthPacket: Bool) throws(USBError)
    /// Asks for a pending transfer to end early (status `.cancelled`, or
    /// however it ended first).
    func cancel(_ box: TransferBox)

    /// Whether the caller runs where blocking on a transfer would deadlock
    /// (the event thread, or inside a completion).
    var isEventThread: Bool { get }
    /// Counts asynchronous work in flight (the event thread runs while > 0).
    func beginAsync()
    func endAsync()
    /// Handles events on the calling thread until `waiter` is finished: how a
    /// synchronous transfer waits without a thread hop.
    func pump(until waiter: TransferWaiter)

    /// After an error: whether the device is leaving (its node hung up),
    /// waiting briefly for the kernel to say so.
    func hungUp() -> Bool

    /// The endpoints of the active configuration, every alternate setting.
    func endpointDescriptors() -> [(endpoint: USBEndpoint, interface: Int)]
    func claim(interface: Int) throws(USBError)
    func release(interface: Int) throws(USBError)
    func setAlternateSetting(_ setting: Int, interface: Int) throws(USBError)
    func clearHalt(endpoint: UInt8) throws(USBError)
    /// Closes the device (after every transfer ended and interfaces were released).
    func close()
}

/// How a submission ended, in devif's words (the transport maps its own).
package enum TransferStatus: Sendable, Equatable {
    case completed, failed, timedOut, cancelled, stall, noDevice, overflow
}
