import CLibUSB

/// One counted reference to a `libusb_device`, dropped when the last Swift
/// owner goes: the source's record, a queued event and a running assembly
/// each hold the device this way, so no code counts references by hand.
///
/// Equal and hashed by the device pointer: the reference an arrival brought
/// and the one its departure brought name the same device. Every owner must
/// be gone before the context is exited (the source joins its threads and
/// empties its queue first).
final class USBDeviceReference: Hashable, @unchecked Sendable {  // immutable; libusb refcounts atomically
    let raw: OpaquePointer

    /// Takes over a reference the caller already holds (libusb_ref_device).
    init(adopting raw: OpaquePointer) { self.raw = raw }

    /// Takes a new reference (for libusb's hotplug callback, which lends one).
    static func retaining(_ raw: OpaquePointer) -> USBDeviceReference {
        LibUSB.ref(raw)
        return USBDeviceReference(adopting: raw)
    }

    deinit { LibUSB.unref(raw) }

    static func == (a: USBDeviceReference, b: USBDeviceReference) -> Bool { a.raw == b.raw }
    func hash(into hasher: inout Hasher) { hasher.combine(UnsafeRawPointer(raw)) }
}
