// hidapi's view of one hidraw node, copied out of its C list.
import CHIDAPI
import DevifCore
import Synchronization

/// Serializes calls into hidapi: its global error string is freed and
/// replaced by hid_init/hid_enumerate/hid_open* without a lock, so two
/// threads inside hidapi at once could double-free it.
package let hidapiLock = Mutex<Void>(())

/// Whether hidapi's enumeration may be called while devices come and go.
/// Before 0.15.0 it crashes the process (strlen of NULL) when a hidraw node
/// it has just listed leaves before it reads its parent's `uevent`
/// (libusb/hidapi#580, fixed in 0.15.0). The lab hit it: a storm of plugs
/// crashed the HID source, and hidapi 0.13.1 (Debian 12) enumerating while
/// uhid devices came and went crashed within 10 s in 5 runs of 5. Any HID
/// device leaving, anywhere on the machine, can cause it, so below 0.15.0
/// devif reads what hidapi would report from sysfs itself (hidapi's own
/// source for it) and does not call hid_enumerate.
let hidapiEnumerationIsSafe: Bool = {
    guard let v = hid_version()?.pointee else { return false }
    return (v.major, v.minor, v.patch) >= (0, 15, 0)
}()

/// What hidapi reports for one hidraw node (its first entry; hidapi 0.13
/// lists one entry per collection, all sharing path and strings).
struct HIDAPIInfo: Sendable, Equatable {
    var vendorID: UInt16
    var productID: UInt16
    var serialNumber: String?
    var manufacturer: String?
    var product: String?
    var releaseNumber: UInt16
    /// Every (usage page, usage) hidapi listed for the node, in its order.
    var usages: [(page: UInt16, usage: UInt16)]
    /// -1 when unknown.
    var interfaceNumber: Int32
    var busType: hid_bus_type

    static func == (lhs: HIDAPIInfo, rhs: HIDAPIInfo) -> Bool {
        lhs.vendorID == rhs.vendorID && lhs.productID == rhs.productID && lhs.serialNumber == rhs.serialNumber
            && lhs.manufacturer == rhs.manufacturer && lhs.product == rhs.product
            && lhs.releaseNumber == rhs.releaseNumber && lhs.interfaceNumber == rhs.interfaceNumber
            && lhs.busType == rhs.busType
            && lhs.usages.elementsEqual(rhs.usages) { $0.page == $1.page && $0.usage == $1.usage }
    }

    /// hidapi's view of every node it lists, by path (`/dev/hidrawN`), from
    /// one `hid_enumerate`: the HID source asks once for all the nodes it is
    /// resolving, never once per node (`PendingNodes`). Empty, without
    /// calling hidapi, when ``hidapiEnumerationIsSafe`` is false; empty too
    /// when hidapi lists nothing. hidapi lists only USB, Bluetooth, I2C and
    /// SPI devices (not BUS_VIRTUAL uhid ones) and has no lookup by path.
    static func enumerateAll() -> [String: HIDAPIInfo] {
        guard hidapiEnumerationIsSafe else { return [:] }
        return hidapiLock.withLock { _ in
            let start = ContinuousClock.now
            hidapiEnumerationCount.add(1, ordering: .relaxed)
            defer { hidapiEnumerationNanoseconds.add(Int((ContinuousClock.now - start).nanoseconds), ordering: .relaxed) }
            guard let list = hid_enumerate(0, 0) else { return [:] }
            defer { hid_free_enumeration(list) }
            var byPath: [String: HIDAPIInfo] = [:]
            var entry: UnsafeMutablePointer<hid_device_info>? = list
            while let current = entry {
                defer { entry = current.pointee.next }
                guard let cPath = current.pointee.path else { continue }
                let d = current.pointee
                let path = String(cString: cPath)
                if byPath[path] == nil {
                    byPath[path] = HIDAPIInfo(vendorID: d.vendor_id, productID: d.product_id,
                                              serialNumber: string(fromWide: d.serial_number),
                                              manufacturer: string(fromWide: d.manufacturer_string),
                                              product: string(fromWide: d.product_string),
                                              releaseNumber: d.release_number, usages: [],
                                              interfaceNumber: d.interface_number, busType: d.bus_type)
                }
                byPath[path]?.usages.append((d.usage_page, d.usage))
            }
            return byPath
        }
    }
}

private let hidapiEnumerationCount = Atomic<Int>(0)
private let hidapiAnsweredCount = Atomic<Int>(0)
private let hidapiEnumerationNanoseconds = Atomic<Int>(0)

/// What devif asked hidapi in this process, for the lab's check that a burst
/// of hidraw arrivals costs one enumeration, not one per node.
package enum HIDAPIStatistics {
    /// `hid_enumerate` calls made by HID sources so far.
    package static var enumerations: Int { hidapiEnumerationCount.load(ordering: .relaxed) }
    /// Time spent inside those calls, in all.
    package static var enumerationTime: Duration { .nanoseconds(hidapiEnumerationNanoseconds.load(ordering: .relaxed)) }
    /// Nodes reported ready with hidapi's entry for them.
    package static var nodesAnswered: Int { hidapiAnsweredCount.load(ordering: .relaxed) }
    /// The `hid_version()` devif runs with ("0.13.1"); nil when unknown.
    package static var version: String? {
        guard let v = hid_version()?.pointee else { return nil }
        return "\(v.major).\(v.minor).\(v.patch)"
    }
    /// Whether devif calls hidapi's enumeration here (0.15.0 and later).
    package static var enumerationIsUsed: Bool { hidapiEnumerationIsSafe }

    static func countAnswered(_ n: Int) {
        if n > 0 { hidapiAnsweredCount.add(n, ordering: .relaxed) }
    }
}

/// Longest wide string converted (hidapi's strings come from sysfs, one page).
private let maximumWideCharacters = 4096

/// A hidapi `wchar_t *` (UTF-32 on Linux) as a String: nil for NULL, invalid
/// scalars (surrogates, > U+10FFFF, negative) become U+FFFD, and at most
/// 4096 characters are read.
func string(fromWide pointer: UnsafePointer<wchar_t>?) -> String? {
    guard let pointer else { return nil }
    var scalars = String.UnicodeScalarView()
    var index = 0
    while index < maximumWideCharacters {
        let unit = pointer[index]
        if unit == 0 { break }
        scalars.append(Unicode.Scalar(UInt32(bitPattern: Int32(unit))) ?? "\u{FFFD}")
        index += 1
    }
    return String(scalars)
}
