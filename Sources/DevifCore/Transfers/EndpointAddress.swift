/// An endpoint's address (`bEndpointAddress`): its number and the direction
/// data flows. Written as a literal (`0x81`) or built from its parts
/// (`.in(1)`, `.out(2)`).
public struct EndpointAddress: RawRepresentable, Hashable, Comparable, Sendable, Codable,
                               ExpressibleByIntegerLiteral, CustomStringConvertible {
    /// Which way data flows, seen from the host.
    public enum Direction: Sendable, Hashable {
        /// Device to host (bit 7 set).
        case `in`
        /// Host to device.
        case out
    }

    /// The address byte: bit 7 the direction, bits 0-3 the number.
    public let rawValue: UInt8

    /// An address from its byte, as a descriptor or a command line gives it.
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// An address from a literal byte, e.g. `0x81`.
    public init(integerLiteral value: UInt8) { rawValue = value }

    /// An address from its number (0-15) and direction.
    public init(number: UInt8, direction: Direction) {
        rawValue = (number & 0x0F) | (direction == .in ? 0x80 : 0)
    }

    /// IN endpoint `number` (device to host).
    public static func `in`(_ number: UInt8) -> EndpointAddress { EndpointAddress(number: number, direction: .in) }
    /// OUT endpoint `number` (host to device).
    public static func out(_ number: UInt8) -> EndpointAddress { EndpointAddress(number: number, direction: .out) }

    /// The endpoint number (0-15).
    public var number: UInt8 { rawValue & 0x0F }
    /// Which way data flows.
    public var direction: Direction { rawValue & 0x80 != 0 ? .in : .out }
    /// Whether data flows from the device to the host.
    public var isIn: Bool { direction == .in }

    /// `0x81 IN`, `0x02 OUT`.
    public var description: String { "0x\(hex2(rawValue)) \(isIn ? "IN" : "OUT")" }

    public static func < (a: EndpointAddress, b: EndpointAddress) -> Bool { a.rawValue < b.rawValue }
}
