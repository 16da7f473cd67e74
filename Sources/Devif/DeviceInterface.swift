import DevifCore
import Foundation

/// One instance of one interface class: what `list` shows and `watch`
/// announces. An instance that matches several classes is one
/// `DeviceInterface` per class, each with its own symbolic link (as on
/// Windows, where each interface class gets its own symbolic link).
public struct DeviceInterface: Sendable, Hashable {
    /// The persistent name, e.g. `usb#vid_1209&pid_0001#SER-0001#{a5dcbf10-...}`.
    public var symbolicLink: String
    public var classGuid: GUID
    /// The class's short name from the catalog (`usb-device`, `hid`, ...).
    public var className: String?
    public var kind: DeviceKind
    public var vendorId: UInt16
    public var productId: UInt16
    /// Raw serial number as the device gave it (untrusted); nil if none.
    public var serialNumber: String?
    /// The USB interface for an interface instance or a HID device on USB.
    public var interfaceNumber: Int?
    /// Where it is plugged (`1-1.4`); for HID not on USB, nil.
    public var portChain: String?
    /// The node to open (`/dev/bus/usb/001/004`, `/dev/hidraw2`); nil when absent.
    public var devnode: String?
    public var manufacturer: String?
    public var product: String?
    /// Present now, or only remembered from an earlier plug.
    public var present: Bool
    /// Whether this process may open ``devnode``; nil when unknown (absent).
    public var access: Access?
    /// The snapshot the instance came from; nil for a remembered (absent) one.
    public var snapshot: DeviceSnapshot?

    /// The link without its class part: equal for the links of one instance
    /// in its several classes.
    public var identityKey: Substring {
        symbolicLink.lastIndex(of: "#").map { symbolicLink[..<$0] } ?? symbolicLink[...]
    }

    public enum Access: String, Sendable, Hashable {
        case ok, denied
    }

    public init(symbolicLink: String, classGuid: GUID, className: String?, kind: DeviceKind,
                vendorId: UInt16, productId: UInt16, serialNumber: String?, interfaceNumber: Int?,
                portChain: String?, devnode: String?, manufacturer: String?, product: String?,
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
    public enum Kind: String, Sendable, Hashable { case arrival, removal }
    /// Increases by one with every event this manager publishes: a gap means
    /// missed events (reported as an overflow), never a silent loss.
    public var seq: UInt64
    public var event: Kind
    public var time: Date
    public var interface: DeviceInterface

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
    public var classGuid: GUID?
    public var vendorId: UInt16?
    public var productId: UInt16?
    public var kind: DeviceKind?

    public init(classGuid: GUID? = nil, vendorId: UInt16? = nil, productId: UInt16? = nil, kind: DeviceKind? = nil) {
        self.classGuid = classGuid
        self.vendorId = vendorId
        self.productId = productId
        self.kind = kind
    }

    public static let all = InterfaceFilter()

    public func matches(_ i: DeviceInterface) -> Bool {
        (classGuid.map { $0 == i.classGuid } ?? true)
            && (vendorId.map { $0 == i.vendorId } ?? true)
            && (productId.map { $0 == i.productId } ?? true)
            && (kind.map { $0 == i.kind } ?? true)
    }
}
