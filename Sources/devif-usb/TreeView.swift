import Devif
import FoundationEssentials
import Glibc

/// `list --tree`: instances grouped the way they hang together. A USB device
/// is a root; its interfaces and its HID nodes (hidraw) are beneath it, a HID
/// node beneath the interface it belongs to when that interface is an
/// instance too; each node lists its classes, each with its symbolic link. A
/// HID device not on USB (uhid, Bluetooth, I2C) is a root of its own.
///
/// Device strings are escaped (``printable(_:limit:)``); links are already
/// safe. Colour only when `color` is set (a terminal without NO_COLOR).
struct TreeView {
    var color: Bool

    /// One physical device: the instances sharing a port chain, ids and serial
    /// (USB, and HID on USB), or one HID identity not on USB.
    private struct Device {
        var key: String
        var instances: [DeviceInterface] = []
    }

    /// One node beneath a device: the device itself, an interface, or a HID
    /// node (its interface number, -1 when not on USB, and its node).
    private enum NodeKind: Hashable, Comparable { case device, interface(Int), hid(Int, String) }

    func render(_ items: [DeviceInterface]) -> [String] {
        var order: [String] = []
        var devices: [String: Device] = [:]
        for i in items {
            let key = Self.deviceKey(i)
            if devices[key] == nil { order.append(key); devices[key] = Device(key: key) }
            devices[key]!.instances.append(i)
        }
        var lines: [String] = []
        for (n, key) in order.sorted(by: { Self.sortKey(devices[$0]!) < Self.sortKey(devices[$1]!) }).enumerated() {
            if n > 0 { lines.append("") }
            lines += render(devices[key]!)
        }
        return lines
    }

    /// Instances of one physical device share this. A port chain names one
    /// present USB device; ids and serial keep apart absent ones once there.
    private static func deviceKey(_ i: DeviceInterface) -> String {
        if let chain = i.portChain {
            return "usb|\(chain)|\(hex4(i.vendorId)):\(hex4(i.productId))|\(i.serialNumber ?? "")"
        }
        return "hid|" + i.identityKey
    }

    private static func sortKey(_ d: Device) -> String {
        let i = d.instances[0]
        // USB first (by bus and port), then HID devices not on USB.
        return (i.portChain.map { "0 \($0)" } ?? "1 ") + " " + i.symbolicLink.rawValue
    }

    private func render(_ device: Device) -> [String] {
        let first = device.instances[0]
        let present = device.instances.contains(where: \.present)
        var head = style(first.portChain == nil ? "hid" : "usb", "1") + " " + hex4(first.vendorId) + ":" + hex4(first.productId)
        if let s = first.serialNumber { head += "  serial " + printable(s, limit: 40) }
        let name = [first.manufacturer, first.product].compactMap { $0.map { printable($0, limit: 40) } }.joined(separator: " ")
        if !name.isEmpty { head += "  \"" + name + "\"" }
        if let chain = first.portChain { head += "  port \(chain)" }
        if let node = device.instances.first(where: { $0.kind == .usb && $0.interfaceNumber == nil })?.devnode {
            head += "  " + node
        }
        if !present { head += "  " + style("(absent)", "2") }

        // Nodes: the device, its interfaces, its HID nodes.
        var nodes: [NodeKind: [DeviceInterface]] = [:]
        for i in device.instances {
            let kind: NodeKind = switch (i.kind, i.interfaceNumber) {
            case (.usb, nil): .device
            case (.usb, let n?): .interface(n)
            case (.hid, let n): .hid(n ?? -1, i.devnode ?? i.identityKey.description)
            }
            nodes[kind, default: []].append(i)
        }
        let sorted = nodes.keys.sorted()
        // A HID node hangs beneath its interface when that is an instance.
        var beneath: [NodeKind: [NodeKind]] = [:]
        var top: [NodeKind] = []
        for k in sorted {
            if case .hid(let n, _) = k, n >= 0, nodes[.interface(n)] != nil {
                beneath[.interface(n), default: []].append(k)
            } else {
                top.append(k)
            }
        }
        var lines = [head]
        for (n, k) in top.enumerated() {
            lines += node(k, nodes[k]!, children: (beneath[k] ?? []).map { ($0, nodes[$0]!) },
                          prefix: "", last: n == top.count - 1)
        }
        return lines
    }

    private func node(_ kind: NodeKind, _ instances: [DeviceInterface], children: [(NodeKind, [DeviceInterface])],
                      prefix: String, last: Bool) -> [String] {
        var label: String
        switch kind {
        case .device: label = "device"
        case .interface(let n): label = "interface " + hex2(UInt8(truncatingIfNeeded: n))
        case .hid(let n, _):
            label = "hid " + (instances[0].devnode ?? "(no node)")
            if n >= 0 { label += "  interface " + hex2(UInt8(n)) }
        }
        if instances.contains(where: { $0.access == .denied }) { label += "  " + style("(access denied)", "33") }
        var lines = [prefix + (last ? "└─ " : "├─ ") + label]
        let inner = prefix + (last ? "   " : "│  ")
        let width = instances.map { ($0.className ?? $0.classGuid.description).count }.max() ?? 0
        let rows = instances.sorted { ($0.className ?? "", $0.symbolicLink) < ($1.className ?? "", $1.symbolicLink) }
        for (n, i) in rows.enumerated() {
            let isLast = n == rows.count - 1 && children.isEmpty
            let name = (i.className ?? i.classGuid.description).padded(to: width)
            var text = style(name, "36") + "  " + i.symbolicLink.rawValue
            if !i.present { text = style(name + "  " + i.symbolicLink.rawValue, "2") }
            lines.append(inner + (isLast ? "└─ " : "├─ ") + text)
        }
        for (n, (k, c)) in children.enumerated() {
            lines += node(k, c, children: [], prefix: inner, last: n == children.count - 1)
        }
        return lines
    }

    private func style(_ text: String, _ sgr: String) -> String {
        color ? "\u{1B}[" + sgr + "m" + text + "\u{1B}[0m" : text
    }
}
