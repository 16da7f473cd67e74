import CLibUSB
import DevifCore
import Synchronization

/// Where the USB source takes its MS OS descriptor policy from.
///
/// - Probe rules (which devices may be asked for the MS OS 1.0 string 0xEE):
///   set with ``setProbeRules(_:)``; by default the `[ms-os-1.0]` sections of
///   the default catalog folders (`DEVIF_CLASSES_PATH`, else
///   `/etc/devif/classes.d` and the user's folder), read when a source starts.
/// - Probe answers are remembered in the registry of the process's latest
///   open ``InstanceRegistry`` (``MSOS10ProbeMemory/current``); without one,
///   in memory for the life of the process.
package enum MSOSDescriptorSettings {
    private static let override = Mutex<[MSOS10ProbeRule]?>(nil)
    private static let processMemory = MSOS10ProbeMemory(store: InMemoryRegistryStore())

    /// Replaces the probe rules for sources started after this call; nil
    /// goes back to the default catalog folders.
    package static func setProbeRules(_ rules: [MSOS10ProbeRule]?) {
        override.withLock { $0 = rules }
    }

    /// The rules a source starting now uses.
    package static func probeRules() -> [MSOS10ProbeRule] {
        if let rules = override.withLock({ $0 }) { return rules }
        return ClassCatalog.load().catalog.msOS10Probes
    }

    /// Where probe answers are remembered now.
    static func memory() -> MSOS10ProbeMemory {
        MSOS10ProbeMemory.current ?? processMemory
    }
}

/// The default control pipe of an open libusb handle.
struct LibUSBControlPipe: ControlPipe {
    let handle: OpaquePointer

    mutating func controlIn(requestType: UInt8, request: UInt8, value: UInt16, index: UInt16,
                            length: Int, timeoutMilliseconds: Int) throws(USBError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: max(0, min(length, Int(UInt16.max))))
        let n = try LibUSB.controlIn(handle, requestType: requestType, request: request, value: value, index: index,
                                     buffer: &buffer, timeoutMilliseconds: UInt32(max(1, timeoutMilliseconds)))
        return Array(buffer.prefix(n))
    }
}
