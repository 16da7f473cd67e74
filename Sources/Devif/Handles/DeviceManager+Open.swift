import DevifCore
import DevifHID
import DevifUSB

/// An open instance of either kind (see ``DeviceManager/open(_:)``).
public enum OpenedInterface: Sendable {
    /// A USB instance (a device or an interface), opened as by ``DeviceManager/openUSB(_:)-(String)``.
    case usb(USBHandle)
    /// A HID instance (a hidraw node), opened as by ``DeviceManager/openHID(_:)-(String)``.
    case hid(HIDHandle)

    /// Closes the handle, whichever kind it is; false if it was closed already.
    @discardableResult
    public func close() -> Bool {
        switch self {
        case .usb(let h): h.close()
        case .hid(let h): h.close()
        }
    }
}

extension DeviceManager {
    /// Opens a present instance by its symbolic link, USB or HID as it is.
    public func open(_ link: String) throws(HandleError) -> OpenedInterface {
        let (interface, _) = try resolve(link)
        switch interface.kind {
        case .usb: return .usb(try openUSB(link))
        case .hid: return .hid(try openHID(link))
        }
    }

    /// Opens a present USB instance (a device, or one interface of a
    /// composite device, which is claimed now).
    /// - Throws: ``/DevifCore/HandleError/unknownLink``, ``/DevifCore/HandleError/notPresent``,
    ///   ``/DevifCore/HandleError/wrongKind`` (a HID link: use ``openHID(_:)-(String)``),
    ///   ``/DevifCore/HandleError/permissionDenied``, ``/DevifCore/HandleError/busy``.
    public func openUSB(_ link: String) throws(HandleError) -> USBHandle {
        let (interface, key) = try resolve(link)
        guard interface.kind == .usb else {
            throw HandleError.wrongKind(link, "a HID instance: open it with openHID (or `open`)")
        }
        guard let devnode = interface.devnode else { throw HandleError.notPresent(link) }
        // Exported over USB/IP, its I/O belongs to the host that attached it.
        if let busID = interface.exportedBusID {
            throw HandleError.busy(link, "exported over USB/IP by this host (bound to usbip-host as \(busID)): "
                + "unexport it first (devif-usb unexport \(busID), or usbip unbind -b \(busID))")
        }
        let device: USBDevice
        do { device = try USBDevice(path: devnode) } catch { throw HandleError(error, link: link) }
        // Only an interface instance names an interface; a device instance's
        // interfaces are claimed when their endpoints are first used.
        let number = interface.interfaceNumber
        if let number {
            do { try device.claim(interface: number) } catch {
                device.close()
                throw HandleError(error, link: link)
            }
        }
        let ref = try register(link: interface.symbolicLink, key: key, backend: .usb(device))
        return USBHandle(ref: ref, device: device, interfaceNumber: number)
    }

    /// Opens a present USB instance by its typed link (see ``openUSB(_:)-(String)``).
    public func openUSB(_ link: SymbolicLink) throws(HandleError) -> USBHandle { try openUSB(link.rawValue) }

    /// Opens a present HID instance by its typed link (see ``openHID(_:)-(String)``).
    public func openHID(_ link: SymbolicLink) throws(HandleError) -> HIDHandle { try openHID(link.rawValue) }

    /// Opens a present HID instance (its hidraw node).
    public func openHID(_ link: String) throws(HandleError) -> HIDHandle {
        let (interface, key) = try resolve(link)
        guard interface.kind == .hid else {
            throw HandleError.wrongKind(link, "a USB instance: open it with openUSB (or `open`)")
        }
        guard let devnode = interface.devnode else { throw HandleError.notPresent(link) }
        let device: HIDDevice
        do { device = try HIDDevice(path: devnode, link: link) } catch { throw HandleError(error, link: link) }
        let ref = try register(link: interface.symbolicLink, key: key, backend: .hid(device))
        return HIDHandle(ref: ref, device: device)
    }

    /// How many handles are open (removed ones included, until closed).
    public var openHandleCount: Int { handles.openHandles().count }

    private func resolve(_ link: String) throws(HandleError) -> (DeviceInterface, DeviceKey) {
        if let present = pipeline.present(link: link), let key = pipeline.deviceKey(link: link) {
            return (present, key)
        }
        if registry.record(for: link) != nil { throw HandleError.notPresent(link) }
        throw HandleError.unknownLink(link)
    }

    private func register(link: SymbolicLink, key: DeviceKey, backend: OpenInstance.Backend) throws(HandleError) -> HandleRef {
        let instance = OpenInstance(link: link, deviceKey: key, backend: backend)
        let link = link.rawValue
        do {
            let handle = try handles.open(instance)
            // Removed between the lookup and now: the removal may have
            // missed this handle, so check again.
            if pipeline.deviceKey(link: link) != key {
                let ref = HandleRef(handle: handle, instance: instance, table: handles)
                ref.markRemoved()
                return ref
            }
            logger.debug("handle opened", metadata: ["link": "\(link)", "device": "\(key)"])
            return HandleRef(handle: handle, instance: instance, table: handles)
        } catch {
            logger.debug("open failed", metadata: ["link": "\(link)", "error": "\(error)"])
            instance.close()
            throw HandleError(error, link: link)
        }
    }

    /// Called by the pipeline when a device leaves: its handles' I/O ends.
    func devicesLeft(_ key: DeviceKey) {
        var removed: [OpenInstance] = []
        handles.markRemoved { instance in
            guard instance.deviceKey == key else { return false }
            removed.append(instance)
            return true
        }
        if !removed.isEmpty {
            logger.debug("device left: its handles' I/O ends", metadata: ["device": "\(key)", "handles": "\(removed.count)"])
        }
        for instance in removed { instance.markRemoved() }
    }
}
