import FoundationEssentials
import Glibc

/// A registry change number. Persistent and strictly increasing: the first
/// change in a new registry is 1, and a number is never reused, even across
/// processes that share one registry file.
public typealias RegistrySequence = UInt64

/// Which kind of instance a record describes (the first part of its symbolic link).
public enum RegistryInstanceKind: String, Sendable, Codable, CaseIterable {
    /// A USB device or one interface of a composite USB device.
    case usb
    /// A HID collection (hidraw), on USB or not.
    case hid
}

/// One instance the registry has ever seen, present or absent.
///
/// Keyed by `symbolicLink`. The descriptive fields are plain values so the
/// registry does not depend on the snapshot or link types; the manager maps
/// its instances to this record. `present`, `firstSeen`, `lastSeen` and
/// `lastChange` are owned by the registry: whatever a caller puts there is
/// replaced when the record is committed.
public struct RegistryRecord: Sendable, Equatable, Codable {
    /// The instance's symbolic link (the registry key).
    public var symbolicLink: String
    /// The interface class GUID, lowercase with braces: `{a5dcbf10-6530-11d2-901f-00c04fb951ed}`.
    public var classGuid: String
    /// The class's name from the catalog, if it has one.
    public var className: String?
    /// USB or HID.
    public var kind: RegistryInstanceKind
    /// USB vendor ID (or the HID bus's vendor ID).
    public var vendorId: UInt16
    /// USB product ID (or the HID bus's product ID).
    public var productId: UInt16
    /// The device's serial number string, as the device sent it.
    public var serialNumber: String?
    /// The interface number for one interface of a composite device.
    public var interfaceNumber: Int?
    /// The port chain (e.g. `1-1.4`), used in links of devices without a serial number.
    public var portChain: String?
    /// The manufacturer string, as the device sent it.
    public var manufacturer: String?
    /// The product string, as the device sent it.
    public var product: String?
    /// The device node (`/dev/bus/usb/001/004`, `/dev/hidraw2`) while present.
    public var devnode: String?
    /// Whether the instance is present now.
    public var present: Bool
    /// When the registry first saw this instance arrive.
    public var firstSeen: Date
    /// The time of the instance's latest change: its last arrival while
    /// present, or the moment it was seen removed while absent.
    public var lastSeen: Date
    /// The sequence number of the latest change to this record.
    public var lastChange: RegistrySequence
    /// Open-ended extra facts about the instance, for later additions.
    public var attributes: [String: String]

    /// A record as a source describes it. The registry fills `present`,
    /// `firstSeen`, `lastSeen` and `lastChange` when it commits an arrival.
    public init(symbolicLink: String, classGuid: String, className: String? = nil,
                kind: RegistryInstanceKind, vendorId: UInt16, productId: UInt16,
                serialNumber: String? = nil, interfaceNumber: Int? = nil,
                portChain: String? = nil, manufacturer: String? = nil,
                product: String? = nil, devnode: String? = nil,
                present: Bool = true,
                firstSeen: Date = Date(timeIntervalSince1970: 0),
                lastSeen: Date = Date(timeIntervalSince1970: 0),
                lastChange: RegistrySequence = 0,
                attributes: [String: String] = [:]) {
        self.symbolicLink = symbolicLink
        self.classGuid = classGuid
        self.className = className
        self.kind = kind
        self.vendorId = vendorId
        self.productId = productId
        self.serialNumber = serialNumber
        self.interfaceNumber = interfaceNumber
        self.portChain = portChain
        self.manufacturer = manufacturer
        self.product = product
        self.devnode = devnode
        self.present = present
        self.firstSeen = firstSeen
        self.lastSeen = lastSeen
        self.lastChange = lastChange
        self.attributes = attributes
    }

    /// True when the two records describe the instance the same way, ignoring
    /// the registry-owned fields (presence, times, sequence number).
    public func hasSameDescription(as other: RegistryRecord) -> Bool {
        symbolicLink == other.symbolicLink && classGuid == other.classGuid
            && className == other.className && kind == other.kind
            && vendorId == other.vendorId && productId == other.productId
            && serialNumber == other.serialNumber && interfaceNumber == other.interfaceNumber
            && portChain == other.portChain && manufacturer == other.manufacturer
            && product == other.product && devnode == other.devnode
            && attributes == other.attributes
    }
}

/// What happened to an instance.
public enum RegistryEvent: String, Sendable, Codable, CaseIterable {
    /// The instance became present, or its description changed while present.
    case arrival
    /// The instance went away (or was found absent at start-up).
    case removal
}

/// One numbered change, as committed.
public struct RegistryChange: Sendable, Equatable, Codable {
    /// The change's sequence number.
    public var seq: RegistrySequence
    /// Arrival or removal.
    public var event: RegistryEvent
    /// The instance's symbolic link.
    public var link: String
    /// When the registry committed the change.
    public var time: Date
    /// The record as it was right after the change.
    public var record: RegistryRecord

    /// A change from its parts (stores make these when they commit).
    public init(seq: RegistrySequence, event: RegistryEvent, link: String, time: Date,
                record: RegistryRecord) {
        self.seq = seq
        self.event = event
        self.link = link
        self.time = time
        self.record = record
    }
}

/// Registry times are kept in whole milliseconds since 1970, so that a time
/// survives a round trip through any store bit for bit.
public enum RegistryTime {
    /// Milliseconds since 1970 for `date`, rounded to the nearest millisecond.
    public static func milliseconds(_ date: Date) -> Int64 {
        let ms = (date.timeIntervalSince1970 * 1000).rounded()
        // Clamp absurd clocks (beyond +-285,000 years) instead of trapping on conversion.
        guard ms.isFinite else { return 0 }
        return Int64(max(-9.0e15, min(9.0e15, ms)))
    }

    /// The date for a count of milliseconds since 1970.
    public static func date(milliseconds: Int64) -> Date {
        Date(timeIntervalSince1970: Double(milliseconds) / 1000)
    }

    /// `date` rounded to the millisecond, exactly as a store gives it back.
    public static func normalized(_ date: Date) -> Date {
        self.date(milliseconds: milliseconds(date))
    }
}
