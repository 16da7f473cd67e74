// Which devices are USB/IP imports, from their sysfs paths alone.
@testable import DevifLinux
import Testing

@Suite struct VHCITests {
    @Test func onlyDevicesBelowAVHCIRootHubAreImported() {
        #expect(VHCI.isImported(sysfsPath: "/sys/devices/platform/vhci_hcd.0/usb33/33-1"))
        #expect(VHCI.isImported(sysfsPath: "/sys/devices/platform/vhci_hcd.3/usb40/40-2.1"))
        // vhci's own root hubs are local devices with no attach record.
        #expect(!VHCI.isImported(sysfsPath: "/sys/devices/platform/vhci_hcd.0/usb33"))
        #expect(!VHCI.isImported(sysfsPath: "/sys/devices/platform/dummy_hcd.0/usb1/1-1"))
        #expect(!VHCI.isImported(sysfsPath: "/sys/devices/platform/vhci_hcd.0/usb33/33-1:1.0"))
    }

    @Test func asciiSearchFindsTheNeedleAnywhereInTheBytes() {
        #expect("/vhci_hcd.0".containsASCII("/vhci_hcd."))
        #expect("/sys/devices/platform/vhci_hcd.".containsASCII("/vhci_hcd."))
        #expect("é/vhci_hcd.1/usb3".containsASCII("/vhci_hcd."))
        #expect(!"/sys/devices/platform/vhci_hcd".containsASCII("/vhci_hcd."))
        #expect(!"/vhci_hcd".containsASCII("/vhci_hcd."))
        #expect(!"".containsASCII("/"))
        #expect("".containsASCII(""))
        #expect(!"//vhci_hcd_/vhci_hc".containsASCII("/vhci_hcd."))
    }

    @Test func noOriginForLocalDevices() {
        #expect(VHCI.origin(ofUSBDevice: "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-4") == nil)
    }
}
