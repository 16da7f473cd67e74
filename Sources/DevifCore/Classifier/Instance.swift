/// A device, or one interface of a composite USB device, or one hidraw node,
/// with the classes it is an instance of.
public struct Instance: Hashable, Sendable, Codable {
    /// What makes it this instance (and its links).
    public var identity: InstanceIdentity
    /// One entry per class, no class twice, in a fixed order: the well-known
    /// classes in ``WellKnownClass/all`` order, then the others by GUID.
    public var memberships: [ClassMembership]
    /// The node to open (for an interface instance: its device's node).
    public var devnode: String?
    /// The sysfs directory of the device (or hidraw node).
    public var sysfsPath: String?
    /// Raw device strings, for display only (escape before printing).
    public var manufacturer: String?
    /// The product string (raw, for display only).
    public var product: String?
    /// The interface's iInterface string (interface instances and single-interface devices).
    public var interfaceString: String?
    /// The device's class triple for a device instance; the interface's for an interface instance.
    public var usbClass: ClassTriple?
    /// HID top-level usages (HID instances).
    public var hidUsages: [HIDUsage]
    /// Whether this process may open ``devnode``.
    public var access: AccessState

    /// An instance from its parts (the ``Classifier`` makes these).
    public init(identity: InstanceIdentity, memberships: [ClassMembership], devnode: String? = nil,
                sysfsPath: String? = nil, manufacturer: String? = nil, product: String? = nil,
                interfaceString: String? = nil, usbClass: ClassTriple? = nil, hidUsages: [HIDUsage] = [],
                access: AccessState = .unknown) {
        self.identity = identity
        self.memberships = memberships
        self.devnode = devnode
        self.sysfsPath = sysfsPath
        self.manufacturer = manufacturer
        self.product = product
        self.interfaceString = interfaceString
        self.usbClass = usbClass
        self.hidUsages = hidUsages
        self.access = access
    }

    /// The classes, in membership order.
    public var classes: [InterfaceClass] { memberships.map(\.interfaceClass) }

    /// Whether it is an instance of class `guid`.
    public func isInstance(of guid: GUID) -> Bool { memberships.contains { $0.interfaceClass.guid == guid } }

    /// The link in class `guid`, with the location when `includeLocation`
    /// (when two present devices share a serial); nil if not an instance of it.
    public func symbolicLink(for guid: GUID, includeLocation: Bool = false) -> SymbolicLink? {
        isInstance(of: guid) ? identity.symbolicLink(for: guid, includeLocation: includeLocation) : nil
    }
}

/// One class an instance belongs to, with the instance's link in it.
public struct ClassMembership: Hashable, Sendable, Codable {
    /// The class.
    public var interfaceClass: InterfaceClass
    /// The link in its usual form: by serial, or by location when there is no
    /// serial. (``InstanceIdentity/symbolicLink(for:includeLocation:ordinal:)`` gives
    /// the serial+location form.)
    public var symbolicLink: SymbolicLink

    /// The membership of an instance with link `symbolicLink` in `interfaceClass`.
    public init(interfaceClass: InterfaceClass, symbolicLink: SymbolicLink) {
        self.interfaceClass = interfaceClass
        self.symbolicLink = symbolicLink
    }
}
