import DevifCore
import FoundationEssentials
import Glibc

/// A JSON value with ordered object keys: the CLI's output has a fixed key
/// order and explicit nulls, which JSONEncoder does not promise.
package enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    package static func == (a: JSONValue, b: JSONValue) -> Bool { a.serialized() == b.serialized() }

    /// Compact JSON text (one line): safe to print one object per line.
    package func serialized() -> String {
        var out = ""
        write(to: &out)
        return out
    }

    package func write(to out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d): out += d.isFinite ? String(d) : "null"
        case .string(let s): JSONValue.writeString(s, to: &out)
        case .array(let items):
            out += "["
            for (n, item) in items.enumerated() {
                if n > 0 { out += "," }
                item.write(to: &out)
            }
            out += "]"
        case .object(let fields):
            out += "{"
            for (n, (key, value)) in fields.enumerated() {
                if n > 0 { out += "," }
                JSONValue.writeString(key, to: &out)
                out += ":"
                value.write(to: &out)
            }
            out += "}"
        }
    }

    /// Escapes quotes, backslashes and every control character, so a hostile
    /// device string can neither break the JSON nor a line-per-object stream.
    static func writeString(_ s: String, to out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{2028}": out += "\\u2028"
            case "\u{2029}": out += "\\u2029"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }
}

extension JSONValue {
    package init(_ s: String?) { self = s.map { .string($0) } ?? .null }
    package init(_ i: Int?) { self = i.map { .int(Int64($0)) } ?? .null }
}

extension DeviceInterface {
    /// The instance object of `list --json` and `watch --json`: exactly these
    /// keys, in this order, null where unknown.
    package var json: JSONValue {
        .object([
            ("symbolicLink", .string(symbolicLink.rawValue)),
            ("classGuid", .string(classGuid.description)),
            ("className", JSONValue(className)),
            ("kind", .string(kind.rawValue)),
            ("vendorId", .string(hex4(vendorId))),
            ("productId", .string(hex4(productId))),
            ("serialNumber", JSONValue(serialNumber)),
            ("interfaceNumber", JSONValue(interfaceNumber)),
            ("portChain", JSONValue(portChain?.description)),
            ("devnode", JSONValue(devnode)),
            ("manufacturer", JSONValue(manufacturer)),
            ("product", JSONValue(product)),
            ("present", .bool(present)),
            ("access", JSONValue(access?.rawValue)),
            ("leftBeforeReady", .bool(leftBeforeReady)),
            ("remote", remote.map { r in
                .object([("host", .string(r.host)), ("port", .string(r.port)), ("busId", .string(r.busID))])
            } ?? .null),
        ])
    }
}

extension InterfaceEvent {
    /// The instance object plus `seq`, `event` and `time` (RFC 3339, UTC, milliseconds).
    package var json: JSONValue {
        guard case .object(var fields) = interface.json else { return .null }
        fields.append(("seq", .int(Int64(bitPattern: seq))))
        fields.append(("event", .string(event.rawValue)))
        fields.append(("time", .string(rfc3339(time))))
        return .object(fields)
    }
}

/// RFC 3339 with milliseconds in UTC, e.g. `2026-11-25T01:02:03.456Z`.
package func rfc3339(_ date: Date) -> String {
    date.formatted(.iso8601.year().month().day().dateSeparator(.dash)
        .time(includingFractionalSeconds: true).timeSeparator(.colon).timeZone(separator: .omitted))
}
