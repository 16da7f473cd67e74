import DevifCore
import DevifHID
import DevifRegistrySQLite
import DevifUSB
import FoundationEssentials
import Glibc
import Logging
import Synchronization

/// The device interface manager: lists the present instances of interface
/// classes, remembers every instance ever seen, and tells subscribers when one
/// arrives or leaves. It owns its sources' threads: nobody pumps an event loop.
///
/// ```swift
/// let manager = try DeviceManager()
/// manager.start()
/// _ = await manager.waitUntilEnumerated(timeout: .seconds(10))
/// let watch = manager.watch(InterfaceFilter(classGuid: WellKnownClass.hid.guid))
/// for i in watch.snapshot { print("present:", i.symbolicLink) }
/// for await update in watch.updates {
///     if case .event(let e) = update { print(e.event, e.interface.symbolicLink) }
/// }
/// ```
public final class DeviceManager: Sendable {
    /// This devif's version (`devif-usb --version` prints it): worth a line
    /// in a bug report.
    public static let version = "0.1.0"

    /// How a manager is set up; the defaults suit a command-line tool.
    public struct Options: Sendable {
        /// The registry file; nil: `$DEVIF_REGISTRY`, else the default
        /// location for this user (see ``/DevifCore/RegistryLocation``).
        public var registryPath: String?
        /// Keep the registry in memory only (nothing persists).
        public var inMemoryRegistry = false
        /// Folders of class files; nil: `$DEVIF_CLASSES_PATH` or the system and user folders.
        public var classFolders: [String]?
        /// A ready catalog; when set, ``classFolders`` is not read.
        public var catalog: ClassCatalog?
        /// The sources; nil: the USB (libusb) and HID (hidraw) sources.
        public var sources: [any DeviceSource]?
        /// Queue length of each watcher before it is told it fell behind.
        public var watchCapacity = 4096
        /// Where the manager's diagnostics go (swift-log): notices (a source
        /// that cannot run, a registry problem) at `.notice`, every arrival
        /// and removal, every handle opened and every removal that ends
        /// open handles at `.debug`. The
        /// default discards them, as a library should until its application
        /// chooses; pass your application's logger to route them. The same
        /// notices also reach ``DeviceManager/onNotice(_:)`` for programs that
        /// act on them.
        public var logger = Logger.discarding
        /// False: the sources report what is present at ``start()`` and
        /// follow no change after it, which makes a one-off listing quicker
        /// (the USB source reads sysfs instead of starting libusb's udev
        /// scan and hotplug callback). Watches then see the present
        /// instances and no later event.
        public var followChanges = true

        /// The defaults: the user's registry file, the default class folders, the
        /// USB and HID sources, and a watch capacity of 4096.
        public init() {}
    }

    /// The classes instances are matched against.
    public let catalog: ClassCatalog
    /// Problems found in class files (file, line, what was expected).
    public let catalogDiagnostics: [CatalogDiagnostic]
    /// The registry of every instance ever seen. It is opened on a thread of
    /// its own while the sources start; the first use waits for it.
    public var registry: InstanceRegistry { registryOpening.registry }
    private let registryOpening: RegistryOpening
    /// The logger given in ``Options/logger``.
    public let logger: Logger

    let pipeline: Pipeline
    private let sources: [any DeviceSource]
    /// Every open handle (``openUSB(_:)-(String)``, ``openHID(_:)-(String)``); a handle's
    /// instance is closed when its last use ends after close.
    let handles = HandleTable<OpenInstance>(onRelease: { $0.close() })
    private let started = Atomic<Bool>(false)

    /// Sets up the catalog, the registry and the sources; starts nothing.
    ///
    /// A registry that cannot be opened or loaded (read-only file system,
    /// corrupt file) does not stop the manager: it remembers in memory only
    /// and says why through ``onNotice(_:)``.
    public init(options: Options = Options()) throws(ManagerError) {
        logger = options.logger
        // First: it opens while the catalog loads and the sources start.
        registryOpening = options.inMemoryRegistry ? RegistryOpening(ready: RegistryOpening.inMemory())
            : RegistryOpening(path: options.registryPath)
        var notices: [Notice] = []
        if let catalog = options.catalog {
            self.catalog = catalog
            self.catalogDiagnostics = []
        } else {
            let loaded = Self.loadCatalog(folders: options.classFolders)
            self.catalog = loaded.catalog
            self.catalogDiagnostics = loaded.diagnostics
            notices += loaded.diagnostics.map { Notice(.catalog, "class file problem: \($0)") }
        }
        // The USB source asks for MS OS 1.0 descriptors only where this
        // catalog allows, and remembers the answers in this registry.
        var usbOptions = USBSource.Options(msOS10ProbeRules: catalog.msOS10Probes,
                                           msOS10ProbeMemory: MSOS10ProbeMemory(store: OpeningRegistryStore(opening: registryOpening)))
        usbOptions.followChanges = options.followChanges
        sources = options.sources ?? [USBSource(options: usbOptions), HIDSource()]
        pipeline = Pipeline(classifier: Classifier(catalog: catalog), registry: registryOpening,
                            sourceNames: sources.map(\.name), watchCapacity: options.watchCapacity,
                            logger: options.logger)
        for n in notices { pipeline.notice(n) }
        registryOpening.report(to: { [weak pipeline] in pipeline?.notice($0) })
        pipeline.onDeviceLeft { [weak self] key in self?.devicesLeft(key) }
    }

    /// The built-in catalog plus class files from `folders` (or the default folders).
    public static func loadCatalog(folders: [String]? = nil) -> ClassCatalog.LoadResult {
        ClassCatalog.load(folders: folders ?? ClassCatalog.defaultFolders())
    }

    /// Starts the sources (each on its own threads). A source that cannot run
    /// (no USB bus on this machine, say) is reported once through
    /// ``onNotice(_:)`` and the others carry on. Idempotent.
    public func start() {
        guard !started.exchange(true, ordering: .acquiringAndReleasing) else { return }
        pipeline.start()
        for source in sources {
            let name = source.name
            do {
                try source.start { [pipeline] event in pipeline.submit(source: name, event) }
            } catch {
                pipeline.sourceFailed(name, error)
            }
        }
    }

    /// Stops the sources and ends every watch. Idempotent.
    public func stop() {
        for source in sources { source.stop() }
        pipeline.stop()
        registryOpening.wait()
    }

    deinit { stop() }

    /// Waits until every source has reported the devices present at start
    /// (or failed to start). Returns false if `timeout` passed first.
    public func waitUntilEnumerated(timeout: Duration) async -> Bool {
        await pipeline.waitUntilEnumerated(timeout: timeout)
    }

    /// Calls `handler` with each notice (a source that cannot run, the
    /// fallback to kernel uevents, a registry problem), including those
    /// already given. Each notice is given once.
    public func onNotice(_ handler: @escaping @Sendable (Notice) -> Void) {
        pipeline.onNotice(handler)
    }

    /// The present instances matching `filter`, ordered by symbolic link.
    public func interfaces(_ filter: InterfaceFilter = .all) -> [DeviceInterface] {
        pipeline.present(filter)
    }

    /// Every instance ever seen (present or remembered), ordered by symbolic link.
    public func allInterfaces(_ filter: InterfaceFilter = .all) -> [DeviceInterface] {
        var byLink: [SymbolicLink: DeviceInterface] = [:]
        for record in registry.all() {
            if let i = DeviceInterface(record: record, catalog: catalog), filter.matches(i) { byLink[i.symbolicLink] = i }
        }
        for i in pipeline.present(filter) { byLink[i.symbolicLink] = i }
        return byLink.values.sorted { $0.symbolicLink < $1.symbolicLink }
    }

    /// The instance with this symbolic link: present, else remembered; nil if never seen.
    public func interface(link: String) -> DeviceInterface? {
        if let present = pipeline.present(link: link) { return present }
        return registry.record(for: link).flatMap { DeviceInterface(record: $0, catalog: catalog) }
    }

    /// The instance with this symbolic link: present, else remembered; nil if never seen.
    public func interface(link: SymbolicLink) -> DeviceInterface? { interface(link: link.rawValue) }

    /// The present instances matching `filter` and, with no gap and no
    /// duplicate between them, every later arrival and removal.
    public func watch(_ filter: InterfaceFilter = .all, capacity: Int? = nil) -> InterfaceWatch {
        pipeline.watch(filter, capacity: capacity)
    }

    /// Calls `handler` (on a thread of its own, in order) with every arrival
    /// and removal matching `filter`, after first calling it with an arrival
    /// for each instance already present when `enumerate` is set. Cancel the
    /// returned token (or release it) to stop.
    public func onChange(_ filter: InterfaceFilter = .all, enumerate: Bool = false,
                         _ handler: @escaping @Sendable (WatchUpdate) -> Void) -> WatchToken {
        pipeline.onChange(filter, enumerate: enumerate, handler)
    }
}

extension ClassCatalog {
    /// Every class, in catalog order (built-ins first, then files).
    public var classes: [InterfaceClass] { definitions.map(\.interfaceClass) }
}

/// A manager could not be set up.
public struct ManagerError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

extension DeviceInterface {
    /// A remembered instance from the registry; nil if the record is damaged
    /// (its link or class GUID does not parse: devif wrote neither).
    init?(record r: RegistryRecord, catalog: ClassCatalog) {
        guard let guid = try? GUID(parsing: r.classGuid),
              let link = try? SymbolicLink(parsing: r.symbolicLink) else { return nil }
        self.init(symbolicLink: link, classGuid: guid,
                  className: r.className ?? catalog[guid]?.interfaceClass.name,
                  kind: r.kind == .usb ? .usb : .hid, vendorId: r.vendorId, productId: r.productId,
                  serialNumber: r.serialNumber, interfaceNumber: r.interfaceNumber,
                  portChain: r.portChain.flatMap { PortChain(parsing: $0) },
                  devnode: r.present ? r.devnode : nil, manufacturer: r.manufacturer, product: r.product,
                  present: false, access: nil)
    }
}
