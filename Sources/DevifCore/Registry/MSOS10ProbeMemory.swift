import FoundationEssentials
import Glibc
import Synchronization

/// What a device model answered when asked for the MS OS 1.0 string
/// descriptor (index 0xEE).
public enum MSOS10ProbeAnswer: Hashable, Sendable, CustomStringConvertible {
    /// An OS string descriptor ("MSFT100") with this vendor code (the bRequest
    /// of the extended compat ID and extended properties requests).
    case present(vendorCode: UInt8)
    /// No OS string descriptor (a stall, a timeout, or anything else).
    case absent

    /// `present vendor-code=XX` or `absent`: also the stored form.
    public var description: String {
        switch self {
        case .present(let code): "present vendor-code=\(hex2(code))"
        case .absent: "absent"
        }
    }

    /// Reads the stored form back; nil for anything else.
    public init?(stored text: String) {
        if text == "absent" { self = .absent; return }
        let prefix = "present vendor-code="
        guard text.hasPrefix(prefix) else { return nil }
        let digits = text.dropFirst(prefix.count)
        guard digits.count == 2, let code = UInt8(digits, radix: 16) else { return nil }
        self = .present(vendorCode: code)
    }
}

/// Remembers MS OS 1.0 probe answers per device model (VID, PID, bcdDevice)
/// in a registry store's facts, as Windows keeps its `osvc` value under
/// `HKLM\SYSTEM\CurrentControlSet\Control\usbflags\VVVVPPPPRRRR`: a model is
/// asked for string 0xEE once, ever.
public struct MSOS10ProbeMemory: Sendable {
    /// Where the facts live.
    public let store: any RegistryStore

    /// A memory kept in `store`'s facts.
    public init(store: any RegistryStore) { self.store = store }

    /// The fact key: `msos10/<vid>:<pid>:<bcd>` (lowercase hex).
    public static func key(vendorID: UInt16, productID: UInt16, bcdDevice: UInt16) -> String {
        "msos10/\(hex4(vendorID)):\(hex4(productID)):\(hex4(bcdDevice))"
    }

    /// The remembered answer, or nil if this model was never asked (or the
    /// stored value is not one this build wrote: then it is asked again).
    public func answer(vendorID: UInt16, productID: UInt16, bcdDevice: UInt16) throws(RegistryError) -> MSOS10ProbeAnswer? {
        try store.fact(forKey: Self.key(vendorID: vendorID, productID: productID, bcdDevice: bcdDevice))
            .flatMap(MSOS10ProbeAnswer.init(stored:))
    }

    /// Remembers `answer` for the model (nil forgets it).
    public func remember(_ answer: MSOS10ProbeAnswer?, vendorID: UInt16, productID: UInt16, bcdDevice: UInt16,
                         time: Date = Date()) throws(RegistryError) {
        try store.setFact(answer?.description, forKey: Self.key(vendorID: vendorID, productID: productID, bcdDevice: bcdDevice),
                          time: time)
    }

    // MARK: MS OS 2.0

    /// The fact key for "this model's BOS has no MS OS 2.0 platform capability":
    /// `msos20/<vid>:<pid>:<bcd>`.
    public static func msOS20Key(vendorID: UInt16, productID: UInt16, bcdDevice: UInt16) -> String {
        "msos20/\(hex4(vendorID)):\(hex4(productID)):\(hex4(bcdDevice))"
    }

    /// Whether this model's BOS was read and had no MS OS 2.0 capability:
    /// then listing need not open the device again to read it.
    public func msOS20Absent(vendorID: UInt16, productID: UInt16, bcdDevice: UInt16) throws(RegistryError) -> Bool {
        try store.fact(forKey: Self.msOS20Key(vendorID: vendorID, productID: productID, bcdDevice: bcdDevice)) == "absent"
    }

    /// Remembers that this model has no MS OS 2.0 capability (false forgets it).
    public func rememberMSOS20Absent(_ absent: Bool, vendorID: UInt16, productID: UInt16, bcdDevice: UInt16,
                                     time: Date = Date()) throws(RegistryError) {
        try store.setFact(absent ? "absent" : nil,
                          forKey: Self.msOS20Key(vendorID: vendorID, productID: productID, bcdDevice: bcdDevice), time: time)
    }

    // MARK: The process's registry

    private static let latest = Mutex<WeakReference<InstanceRegistry>?>(nil)

    /// Called by every ``InstanceRegistry`` as it opens: sources that
    /// remember facts per model (the USB source's MS OS 1.0 probe) use the
    /// latest registry still open, so one `DeviceManager` needs no wiring
    /// for it. Held weakly: a closed registry is not kept open by this.
    static func registryOpened(_ registry: InstanceRegistry) {
        latest.withLock { $0 = WeakReference(registry) }
    }

    /// The memory of the process's most recently opened registry still open
    /// (see `registryOpened(_:)`); nil when there is none.
    public static var current: MSOS10ProbeMemory? {
        latest.withLock { $0?.object }.map { MSOS10ProbeMemory(store: $0.store) }
    }
}
