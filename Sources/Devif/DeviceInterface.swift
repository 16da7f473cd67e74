import DevifCore
import DevifLinux
import FoundationEssentials
import Glibc

/// One instance of one interface class: what `list` shows and `watch`
/// announces. An instance that matches several classes is one
/// `DeviceInterface` per class, each with its own symbolic link (as on
/// Windows, where each interface class gets its own symbolic link).
public struct DeviceInterface: Sendable, Hashable {
    /// The persistent name, e.g. `usb#vid_1209&pid_0001#SER-0001#{a5dcbf10-...}`:
    /// its text is `symbolicLink.rawValue` (also its `description`), and its
    /// parts (ids, serial, location, class) are parsed.
    public var symbolicLink: SymbolicLink
    /// The GUID of the interface class this instance is in (the last part of
    /// ``symbolicLink``).
    public var classGuid: GUID
    /// The class's short name from the catalog (`usb-device`, `hid`, ...).
    public var className: String?
    /// `usb` for a USB device or interface (libusb), `hid` for a hidraw node:
    /// which of ``DeviceManager/openUSB(_:)-(String)`` and ``DeviceManager/openHID(_:)-(String)`` opens it.
    public var kind: DeviceKind
    /// The vendor ID (USB idVendor; for HID not on USB, the kernel's `HID_ID`).
    public var vendorId: UInt16
    /// The product ID (USB idProduct; for HID not on USB, the kernel's `HID_ID`).
    public var productId: UInt16
    /// Raw serial number as the device gave it (untrusted); nil if none.
    public var serialNumber: String?
    /// The USB interface for an interface instance or a HID device on USB.
    public var interfaceNumber: Int?
    /// Where it is plugged (`1-1.4`); for HID not on USB, nil.
    public var portChain: PortChain?
    /// The node to open (`/dev/bus/usb/001/004`, `/dev/hidraw2`); nil when absent.
    public var devnode: String?
    /// The manufacturer string the device gave (untrusted); nil if none.
    public var manufacturer: String?
    /// The product string the device gave (untrusted); nil if none.
    public var product: String?
    /// Present now, or only remembered from an earlier plug.
    public var present: Bool
    /// Whether this process may open ``devnode``; nil when unknown (absent).
    public var access: Access?
    /// The snapshot the instance came from; nil for a remembered (absent) one.
    public var snapshot: DeviceSnapshot?

    /// The device left before its source had made it ready: the instance
    /// carries only what was known by then (for USB: ids and descriptors, no
    /// strings), and its removal follows. See
    /// `DeviceSnapshot.leftBeforeReady` in DevifCore.
    public var leftBeforeReady: Bool { snapshot?.leftBeforeReady ?? false }

    /// For a device imported over USB/IP: the exporting host and its bus id
    /// there (``portChain`` is then the local vhci port's). Nil for a local
    /// device, and for a remembered one.
    public var remote: RemoteOrigin? { snapshot?.remote }

    /// The bus id this host exports the instance's USB device as over
    /// USB/IP (bound to usbip-host, see `USBIP.export(busID:)`), read from
    /// sysfs now; nil when it is not exported.
    public var exportedBusID: String? {
        guard remote == nil, let chain = snapshot?.portChain, !chain.ports.isEmpty,
              USBIPHost.isExported(busID: "\(chain)") else { return nil }
        return "\(chain)"
    }

    /// The link without its class part: equal for the links of one instance
    /// in its several classes.
    public var identityKey: Substring {
        let text = symbolicLink.rawValue
        return text.lastIndex(of: "#").map { text[..<$0] } ?? text[...]
    }

    /// Whether this process may open an instance's device node.
    public enum Access: String, Sendable, Hashable {
        /// `ok`: the node can be opened; `denied`: the kernel refuses this process
        /// (`devif-usb rules check` says why and which udev rule fixes it).
        case ok, denied
    }

    /// An instance from its parts. The manager makes these; a program needs
    /// this only to build instances of its own (in tests, say).
    public init(symbolicLink: SymbolicLink, classGuid: GUID, className: String?, kind: DeviceKind,
                vendorId: UInt16, productId: UInt16, serialNumber: String?, interfaceNumber: Int?,
                portChain: PortChain?, devnode: String?, manufacturer: String?, product: String?,
                present: Bool, access: Access?, snapshot: DeviceSnapshot? = nil) {
        self.symbolicLink = symbolicLink
        self.classGuid = classGuid
        self.className = className
        self.kind = kind
        self.vendorId = vendorId
        self.productId = productId
        self.serialNumber = serialNumber
        self.interfaceNumber = interfaceNumber
        self.portChain = portChain
        self.devnode = devnode
        self.manufacturer = manufacturer
        self.product = product
        self.present = present
        self.access = access
        self.snapshot = snapshot
    }
}

/// An arrival or removal of one ``DeviceInterface``.
public struct InterfaceEvent: Sendable, Hashable {
    /// Whether an event is an arrival or a removal.
    public enum Kind: String, Sendable, Hashable {
        /// `arrival`: the instance appeared (plugged in, or present when the
        /// manager started); `removal`: it went away.
        case arrival, removal
    }
    /// Increases by one with every event this manager publishes: a gap means
    /// missed events (reported as an overflow), never a silent loss.
    public var seq: UInt64
    /// Whether the instance arrived or was removed.
    public var event: Kind
    /// When the manager saw the change.
    public var time: Date
    /// The instance: for a removal, as it was while present.
    public var interface: DeviceInterface

    /// An event from its parts (the manager makes these; tests may too).
    public init(seq: UInt64, event: Kind, time: Date, interface: DeviceInterface) {
        self.seq = seq
        self.event = event
        self.time = time
        self.interface = interface
    }
}

/// Which instances a query or a watch is about. Every criterion given must
/// match (AND); an empty filter matches everything.
public struct InterfaceFilter: Sendable, Hashable {
    /// Only instances of this class; nil: any class.
    public var classGuid: GUID?
    /// Only instances with this vendor ID; nil: any.
    public var vendorId: UInt16?
    /// Only instances with this product ID; nil: any.
    public var productId: UInt16?
    /// Only USB or only HID instances; nil: both.
    public var kind: DeviceKind?

    /// A filter from the criteria given (all must match); no argument: everything.
    public init(classGuid: GUID? = nil, vendorId: UInt16? = nil, productId: UInt16? = nil, kind: DeviceKind? = nil) {
        self.classGuid = classGuid
        self.vendorId = vendorId
        self.productId = productId
        self.kind = kind
    }

    /// The empty filter: every instance.
    public static let all = InterfaceFilter()

    /// Whether `i` meets every criterion of this filter.
    public func matches(_ i: DeviceInterface) -> Bool {
        (classGuid.map { $0 == i.classGuid } ?? true)
            && (vendorId.map { $0 == i.vendorId } ?? true)
            && (productId.map { $0 == i.productId } ?? true)
            && (kind.map { $0 == i.kind } ?? true)
    }
}
