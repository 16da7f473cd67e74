/// Where an instance's link goes in a link folder (`/dev/devif` for the udev
/// rules, any folder for Devif's `LinkFolder`): one folder per class, one entry per
/// instance, named by its symbolic link:
///
///     <root>/usb-device/usb#vid_1209&pid_0001#SER-0001#{a5dcbf10-6530-11d2-901f-00c04fb951ed}
///     <root>/hid/hid#vid_1209&pid_0001&mi_00#SER-0001#{4d1e55b2-f16f-11cf-88cb-001111000030}
///     <root>/{88888888-2222-3333-4444-555555555555}/usb#…     a class with no name of its own
///
/// The udev rules and the link folder use this one layout, so both give the
/// same paths.
public enum LinkLayout {
    /// The folder of class `guid`: the class's name when the catalog gives it
    /// one that names this class and no other, else the GUID text
    /// (`{xxxxxxxx-…}`, lowercase). Firmware-declared classes without a
    /// catalog entry all share the name `firmware-declared`, so they get their
    /// GUID; so does a class whose name a later class took over (a catalog
    /// diagnostic already reports that clash).
    public static func folderName(for guid: GUID, in catalog: ClassCatalog) -> String {
        guard let definition = catalog[guid] else { return guid.description }
        let name = definition.interfaceClass.name
        // A name must be a valid class name (a safe single path component by
        // construction) and must look up to this very class.
        guard InterfaceClass.isValidName(name), catalog.lookup(name)?.guid == guid else { return guid.description }
        return name
    }

    /// Whether `name` can be created as one entry inside a folder without
    /// naming anything else: 1...255 bytes, no `/`, no NUL, not `.` or `..`.
    /// Symbolic links and folder names from ``folderName(for:in:)`` always are;
    /// this is the last check before anything is created.
    public static func isSafeComponent(_ name: String) -> Bool {
        let bytes = name.utf8
        guard (1...SymbolicLink.maximumLength).contains(bytes.count), name != ".", name != ".." else { return false }
        return !bytes.contains(UInt8(ascii: "/")) && !bytes.contains(0)
    }

    /// `folder/link`, relative to the root; nil if either part is not a safe
    /// single component (it then must not be created).
    public static func relativePath(folder: String, link: String) -> String? {
        guard isSafeComponent(folder), isSafeComponent(link) else { return nil }
        return folder + "/" + link
    }
}
