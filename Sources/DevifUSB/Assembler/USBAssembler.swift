import DevifCore
import CLibUSB
import DevifLinux
import Glibc

/// Makes an arrival *ready*: from the descriptors (libusb's or sysfs's) to a
/// ``DeviceSnapshot`` with its node present, its strings, the active
/// configuration and whether this process may open it.
///
/// Strings come from sysfs first (the kernel read them at enumeration: no
/// permission and no device I/O needed), then, only for what sysfs lacks and
/// only when the node may be opened, from the device with a timeout.
struct USBAssembler: Sendable {
    var options: USBSource.Options
    /// MS OS descriptor policy (which devices may be asked for string 0xEE),
    /// read when the source starts.
    var msOSProbes: [MSOS10ProbeRule]

    init(options: USBSource.Options) {
        self.options = options
        msOSProbes = options.msOS10ProbeRules ?? MSOSDescriptorSettings.probeRules()
    }

    /// How to get a libusb handle for reading strings the kernel did not cache.
    enum Opener {
        /// libusb_open on a device libusb discovered.
        case libusb(OpaquePointer)
        /// open(2) the node and libusb_wrap_sys_device it (no-discovery mode).
        case wrap(context: OpaquePointer)
        /// Never open the device: strings from sysfs only, no MS OS
        /// descriptors (`USBSource.snapshot(ofNode:)`).
        case never

        var mayOpen: Bool { if case .never = self { false } else { true } }
    }

    struct Result: Sendable {
        var snapshot: DeviceSnapshot
        /// Things worth a line in the log (what could not be read, and why).
        var problems: [String]
        /// The device left before it could be read (its node and its sysfs
        /// directory are gone or another device's): the snapshot holds only
        /// what the descriptors told (no strings: they come from sysfs).
        var gone = false
    }

    /// Makes `raw` ready. `abandoned` (set when the device has left or the
    /// source stops) ends the waits early.
    func assemble(_ raw: RawDevice, opener: Opener, abandoned: Flag? = nil) -> Result {
        let waitFor = { (condition: () -> Bool) in
            waitUntil { condition() || abandoned?.value.load(ordering: .acquiring) == true }
        }
        var problems = raw.problems
        let chain = raw.portChain
        let devnode = Self.devnode(bus: raw.bus, address: raw.address)
        // sysfs: only if the directory at this port chain is this device,
        // whose node number its `dev` file names. Read through the directory
        // held open, a file is this device's or the read fails.
        let dir = "/sys/bus/usb/devices/\(chain)"
        let number = USBSource.usbfsMinor(bus: Int(raw.bus), devnum: Int(raw.address)).map { "\(USBSource.usbDeviceMajor):\($0)" }
        let device = number == nil ? nil : SysfsDirectory(dir)
        let isThisDevice = { number != nil && device?.string("dev", limit: 32) == number }
        // A device already gone never gets its node: waiting for it would
        // hold every later arrival up (a storm of short plugs queues many).
        if !waitFor({ Sysfs.exists(devnode) || !isThisDevice() }), isThisDevice() {
            problems.append("\(devnode) did not appear within \(options.readyWait)")
        }
        var strings = [UInt8: String](minimumCapacity: 4)
        var sysfsPath: String?
        var remote: RemoteOrigin?
        var active: UInt8?
        if let device, isThisDevice() {
            // What needs no driver first (the kernel cached the device's
            // strings before announcing it): its binding often lands while
            // these are read, and a poll for it costs a step.
            for (index, file) in [(raw.manufacturerIndex, "manufacturer"), (raw.productIndex, "product"),
                                  (raw.serialIndex, "serial")] where index != 0 {
                if let s = device.string(file, limit: 1024) { strings[index] = s }
            }
            let path = device.canonicalPath ?? Sysfs.canonical(dir) ?? dir
            if VHCI.isImported(sysfsPath: path) {
                // Imported over USB/IP: named by where it really is. The
                // usbip tool writes its attach record just after the
                // device comes up on vhci.
                _ = waitFor { remote = VHCI.origin(ofUSBDevice: path); return remote != nil || !isThisDevice() }
                if remote == nil {
                    problems.append("imported over USB/IP, but no attach record in \(VHCI.recordDirectory) names its vhci port: "
                        + "named by its vhci port chain \(chain), which follows the order of attaching")
                }
            }
            // The kernel announces a device before its driver (the generic
            // "usb" driver, which chooses the configuration) is bound: wait
            // for the binding, then read bConfigurationValue, which takes the
            // device lock and so also waits out a configuration in progress.
            if !waitFor({ device.exists("driver") || !device.exists("dev") }) {
                problems.append("no driver bound within \(options.readyWait): the configuration may not be final")
            }
            if let text = device.string("bConfigurationValue", limit: 16) {
                active = UInt8(text.trimmingASCIIWhitespace()) ?? 0
            }
            if let active, active != 0, let configuration = raw.configurations.first(where: { $0.value == active }) {
                for number in Set(configuration.interfaces.map(\.descriptor.number)) {
                    // Interfaces are named after the device, except a root hub's
                    // (`usb1` has `1-0:1.0`).
                    let prefix = chain.ports.isEmpty ? "\(raw.bus)-0" : "\(chain)"
                    let interface = "\(prefix):\(active).\(number)"
                    let settings = configuration.interfaces.filter { $0.descriptor.number == number }
                    // One alternate setting: it is the current one, no read.
                    let alt = settings.count == 1 ? Int(settings[0].descriptor.alternateSetting)
                        : device.decimal(interface + "/bAlternateSetting")
                    guard let alt, let descriptor = settings.first(where: { Int($0.descriptor.alternateSetting) == alt })
                    else { continue }
                    if descriptor.stringIndex != 0, let s = device.string(interface + "/interface", limit: 1024) {
                        strings[descriptor.stringIndex] = s
                    }
                }
            }
            if isThisDevice() {
                sysfsPath = path
            } else {
                strings = [:]
                active = nil
                remote = nil
            }
        }
        if sysfsPath == nil { problems.append("\(dir) is not this device (gone or replaced): no strings from sysfs") }

        var access = accessState(devnode, raw)
        let wanted = raw.stringIndexes
        let missing = wanted.subtracting(strings.keys).sorted()
        let msos = opener.mayOpen ? msOSFetcher(for: raw) : nil
        var firmwareGUIDs: [FirmwareGUID] = []
        if msos != nil, case .denied = access {
            problems.append("MS OS descriptors not read: this process may not open \(devnode) (see its access); "
                + "firmware-declared classes are missing until it may")
        }
        let stillWanted = abandoned?.value.load(ordering: .acquiring) != true
        if stillWanted, opener.mayOpen, case .ok = access, options.confirmAccessByOpening || !missing.isEmpty || msos != nil {
            switch open(opener, devnode) {
            case .success(let opened):
                if !missing.isEmpty {
                    var reader = StringDescriptorReader(
                        handle: opened.handle, timeoutMilliseconds: UInt32(options.stringTimeout.milliseconds))
                    for index in missing { if let s = reader.string(index) { strings[index] = s } }
                    if let error = reader.gaveUp { problems.append("strings: \(error)") }
                }
                if let msos {
                    var pipe = LibUSBControlPipe(handle: opened.handle)
                    let outcome = msos.fetch(&pipe, device: MSOSDeviceFacts(
                        vendorID: raw.vendorID, productID: raw.productID, bcdDevice: raw.bcdDevice, bcdUSB: raw.bcdUSB))
                    firmwareGUIDs = outcome.guids
                    problems += outcome.notes.map { "MS OS: " + $0 }
                }
                opened.close()
            case .failure(let error) where error == .access:
                access = .denied(reason: "\(devnode): opening it failed with permission denied although its mode allows it "
                    + "(a container's device cgroup or a security module forbids it)")
            case .failure(let error):
                problems.append("opening \(devnode): \(error)")
            }
        }
        let unread = wanted.subtracting(strings.keys)
        if !unread.isEmpty, case .ok = access {
            problems.append("string descriptor(s) \(unread.sorted().map(String.init).joined(separator: ", ")) could not be read or are empty: reported as absent")
        }

        func string(_ index: UInt8) -> String? { index == 0 ? nil : strings[index] }
        let configurations = raw.configurations.map { c in
            USBConfiguration(value: c.value, interfaces: c.interfaces.map { i in
                var d = i.descriptor
                d.interfaceString = string(i.stringIndex)
                return d
            })
        }
        let snapshot = DeviceSnapshot(
            kind: .usb, portChain: chain, remote: remote, deviceAddress: raw.address, vendorID: raw.vendorID,
            productID: raw.productID, bcdDevice: raw.bcdDevice, deviceClass: raw.deviceClass,
            manufacturer: string(raw.manufacturerIndex), product: string(raw.productIndex),
            serialNumber: string(raw.serialIndex), configurations: configurations,
            activeConfigurationValue: active, firmwareGUIDs: firmwareGUIDs, devnode: devnode, sysfsPath: sysfsPath,
            access: access)
        return Result(snapshot: snapshot, problems: problems, gone: sysfsPath == nil && !Sysfs.exists(devnode))
    }

    /// What the announcement alone tells (descriptors, ids, place), reported
    /// as is when the device leaves before it is ready.
    static func known(_ raw: RawDevice) -> DeviceSnapshot {
        DeviceSnapshot(
            kind: .usb, portChain: raw.portChain, deviceAddress: raw.address, vendorID: raw.vendorID,
            productID: raw.productID, bcdDevice: raw.bcdDevice, deviceClass: raw.deviceClass,
            configurations: raw.configurations.map { c in USBConfiguration(value: c.value, interfaces: c.interfaces.map(\.descriptor)) },
            devnode: Self.devnode(bus: raw.bus, address: raw.address))
    }

    /// The MS OS fetch for this device, or nil when there is nothing to ask:
    /// no BOS (bcdUSB below 0x0201, or one already read without MS OS 2.0,
    /// remembered per model, so listing does not open such devices again)
    /// and no MS OS 1.0 probe allowed, or its remembered answer is "absent".
    private func msOSFetcher(for raw: RawDevice) -> MSOSFetcher? {
        let memory = options.msOS10ProbeMemory ?? MSOSDescriptorSettings.memory()
        var settings = MSOSFetcher.Settings(msOS10Probes: msOSProbes, memory: memory)
        settings.requestTimeoutMilliseconds = Int(min(options.stringTimeout.milliseconds, 300))
        let facts = MSOSDeviceFacts(vendorID: raw.vendorID, productID: raw.productID, bcdDevice: raw.bcdDevice,
                                    bcdUSB: raw.bcdUSB)
        if raw.bcdUSB >= 0x0201, !MSOSFetcher.knownWithoutMSOS20(facts, memory) { return MSOSFetcher(settings: settings) }
        guard msOSProbes.allowMSOS10Probe(vendorID: raw.vendorID, productID: raw.productID, bcdDevice: raw.bcdDevice)
        else { return nil }
        if (try? memory.answer(vendorID: raw.vendorID, productID: raw.productID, bcdDevice: raw.bcdDevice)) == .absent {
            return nil  // asked before: no OS string, so nothing to open the device for
        }
        return MSOSFetcher(settings: settings)
    }

    /// `/dev/bus/usb/BBB/DDD`, as devtmpfs names it.
    static func devnode(bus: UInt8, address: UInt8) -> String {
        func three(_ v: UInt8) -> String { let s = String(v); return String(repeating: "0", count: 3 - s.count) + s }
        return "/dev/bus/usb/\(three(bus))/\(three(address))"
    }

    /// Polls `condition` until it holds or ``USBSource/Options/readyWait``
    /// passes. The node and the driver binding normally exist already (or
    /// within milliseconds); there is nothing to wait on short of inotify on
    /// sysfs, which sysfs does not support.
    /// The polls start at 0.5 ms and double up to 5 ms: the driver is
    /// usually bound a few milliseconds after the announcement, and a fixed
    /// 5 ms step added up to that much to a plug's arrival.
    private func waitUntil(_ condition: () -> Bool) -> Bool {
        if condition() { return true }  // the usual case: no clock read
        let clock = ContinuousClock()
        let deadline = clock.now + options.readyWait
        var pause: UInt32 = 500
        while !condition() {
            guard clock.now < deadline else { return false }
            usleep(pause)
            pause = min(pause * 2, 5_000)
        }
        return true
    }

    // MARK: Access

    /// Whether this process may open `devnode` read-write; on denial, its
    /// mode and owner and the rule that fixes it.
    private func accessState(_ devnode: String, _ raw: RawDevice) -> AccessState {
        guard let denial = NodeAccess.denial(devnode) else { return .ok }
        let rule = "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"\(hex4(raw.vendorID))\", ATTR{idProduct}==\"\(hex4(raw.productID))\", TAG+=\"uaccess\""
        return .denied(reason: denial + "; a udev rule granting access fixes this, e.g. \(rule) (or MODE=\"0660\", GROUP=\"plugdev\")")
    }

    // MARK: Opening

    private struct Opened {
        var handle: OpaquePointer
        var fd: Int32?
        func close() {
            LibUSB.close(handle)
            if let fd { _ = Glibc.close(fd) }
        }
    }

    private func open(_ opener: Opener, _ devnode: String) -> Swift.Result<Opened, USBError> {
        switch opener {
        case .libusb(let dev):
            do { return .success(Opened(handle: try LibUSB.open(dev), fd: nil)) } catch { return .failure(error) }
        case .wrap(let context):
            let fd = Glibc.open(devnode, O_RDWR | O_CLOEXEC)
            guard fd >= 0 else {
                let e = errno
                let code = e == EACCES || e == EPERM ? LIBUSB_ERROR_ACCESS : e == ENOENT || e == ENODEV ? LIBUSB_ERROR_NO_DEVICE : LIBUSB_ERROR_IO
                return .failure(USBError(libusbCode: code.rawValue, operation: "open(\(devnode))"))
            }
            do { return .success(Opened(handle: try LibUSB.wrapSysDevice(context, fd: fd), fd: fd)) } catch {
                _ = Glibc.close(fd)
                return .failure(error)
            }
        case .never:
            return .failure(USBError(libusbCode: LIBUSB_ERROR_NOT_SUPPORTED.rawValue, operation: "open(\(devnode))"))
        }
    }
}
