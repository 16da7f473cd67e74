import DevifCore

/// The classes of an exported device, from what usbipd tells of it.
public enum RemoteListing {
    /// Every class an instance of `device` (at `host`) would be in, as far as
    /// ids and class codes tell: the device's and its interfaces' classes.
    public static func classes(of device: USBIPExportedDevice, host: String, port: String = RemoteOrigin.defaultPort,
                               catalog: ClassCatalog) -> Set<GUID> {
        var found = Set<GUID>()
        for instance in Classifier(catalog: catalog).classify(device.snapshot(host: host, port: port)) {
            for m in instance.memberships { found.insert(m.interfaceClass.guid) }
        }
        return found
    }
}
