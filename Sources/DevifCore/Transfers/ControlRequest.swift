/// A control request without its direction: who it is for, whose
/// definition it follows, and its `bRequest`, `wValue` and `wIndex`. The
/// direction comes from the call that sends it (`controlIn` or
/// `controlOut`), so it can never disagree with the data stage.
///
///     // A vendor request to the device, reading 64 bytes back.
///     let reply = try handle.controlIn(.vendor(request: 0x01, value: 0x0002), length: 64)
///     // SET_FEATURE(ENDPOINT_HALT) on endpoint 0x81.
///     try handle.controlOut(.setFeature(.endpointHalt, endpoint: 0x81))
public struct ControlRequest: Hashable, Sendable {
    /// Whose definition the request follows (`bmRequestType` bits 5-6).
    public enum Kind: UInt8, Sendable, Hashable {
        /// Defined by the USB specification (GET_STATUS, SET_FEATURE, ...).
        case standard = 0
        /// Defined by the interface's class (HID, CDC, ...).
        case `class` = 1
        /// Defined by the device's vendor.
        case vendor = 2
    }

    /// Who the request is for (`bmRequestType` bits 0-4).
    public enum Recipient: UInt8, Sendable, Hashable {
        /// The device.
        case device = 0
        /// An interface (its number in `wIndex`).
        case interface = 1
        /// An endpoint (its address in `wIndex`).
        case endpoint = 2
        /// Something else the class defines.
        case other = 3
    }

    /// Whose definition the request follows.
    public var kind: Kind
    /// Who the request is for.
    public var recipient: Recipient
    /// `bRequest`.
    public var request: UInt8
    /// `wValue`.
    public var value: UInt16
    /// `wIndex` (an interface or endpoint number when that is the recipient).
    public var index: UInt16

    /// A request from its parts.
    public init(_ kind: Kind, to recipient: Recipient, request: UInt8, value: UInt16 = 0, index: UInt16 = 0) {
        self.kind = kind
        self.recipient = recipient
        self.request = request
        self.value = value
        self.index = index
    }

    /// `bmRequestType` for a data stage in (device to host) or out.
    public func requestType(in isIn: Bool) -> UInt8 {
        (isIn ? 0x80 : 0) | kind.rawValue << 5 | recipient.rawValue
    }

    /// A vendor request (to the device unless said otherwise).
    public static func vendor(request: UInt8, value: UInt16 = 0, index: UInt16 = 0,
                              to recipient: Recipient = .device) -> ControlRequest {
        ControlRequest(.vendor, to: recipient, request: request, value: value, index: index)
    }

    /// A class request (to an interface unless said otherwise).
    public static func `class`(request: UInt8, value: UInt16 = 0, index: UInt16 = 0,
                               to recipient: Recipient = .interface) -> ControlRequest {
        ControlRequest(.class, to: recipient, request: request, value: value, index: index)
    }

    /// A standard feature selector.
    public enum Feature: UInt16, Sendable {
        /// An endpoint's halt (stall) condition.
        case endpointHalt = 0
        /// The device's remote wake-up.
        case deviceRemoteWakeup = 1
    }

    /// GET_STATUS of the device, an interface (`index`) or an endpoint (its address); 2 bytes in.
    public static func getStatus(_ recipient: Recipient = .device, index: UInt16 = 0) -> ControlRequest {
        ControlRequest(.standard, to: recipient, request: 0x00, index: index)
    }

    /// SET_FEATURE of an endpoint (halts it) or of the device.
    public static func setFeature(_ feature: Feature, endpoint: EndpointAddress? = nil) -> ControlRequest {
        ControlRequest(.standard, to: endpoint == nil ? .device : .endpoint, request: 0x03, value: feature.rawValue,
                       index: UInt16(endpoint?.rawValue ?? 0))
    }

    /// CLEAR_FEATURE of an endpoint (clears a halt) or of the device.
    public static func clearFeature(_ feature: Feature, endpoint: EndpointAddress? = nil) -> ControlRequest {
        ControlRequest(.standard, to: endpoint == nil ? .device : .endpoint, request: 0x01, value: feature.rawValue,
                       index: UInt16(endpoint?.rawValue ?? 0))
    }

    /// GET_DESCRIPTOR of `type` (1 device, 2 configuration, 3 string, 15 BOS) at `index`.
    public static func getDescriptor(type: UInt8, index: UInt8 = 0, language: UInt16 = 0) -> ControlRequest {
        ControlRequest(.standard, to: .device, request: 0x06, value: UInt16(type) << 8 | UInt16(index), index: language)
    }

    /// GET_INTERFACE: the current alternate setting of interface `number`; 1 byte in.
    public static func getInterface(_ number: UInt16) -> ControlRequest {
        ControlRequest(.standard, to: .interface, request: 0x0A, index: number)
    }
}
