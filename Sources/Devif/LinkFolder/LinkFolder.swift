import DevifCore
import FoundationEssentials
import Glibc
import Synchronization

/// Keeps a folder of symbolic links in step with a manager, without udev
/// rules: `<root>/<class>/<symbolic link>` -> the instance's device node, one
/// folder per class (``/DevifCore/LinkLayout``), with the library's names (including the
/// registry's `serial@port` for a second device with the same serial).
///
/// Safety, because the folder may be shared with other programs and device
/// strings are hostile:
/// - Every name is one path component (``/DevifCore/LinkLayout/isSafeComponent(_:)``)
///   and every file operation is relative to a descriptor of the root or of a
///   class folder opened with `O_NOFOLLOW`, so nothing is created outside the
///   root and no symbolic link on the way is followed.
/// - A link is made under a temporary name in its class folder and then
///   hard-linked (new name; fails rather than replace) or renamed (replacing
///   a link of ours) into place, so readers never see a missing or half-made
///   link.
/// - It only ever removes or replaces what it created: a manifest file in the
///   root (``manifestName``) records each link and its target, and an entry is
///   touched only while it is still a symbolic link with the recorded target.
///   Anything else in the way is reported as ``Change/refused(path:reason:)``
///   and left alone. At start, links the manifest lists that are no longer
///   present (a crash, a device that left while nobody watched) are removed.
/// - One watcher per folder: the root is locked (`flock`) while open.
public final class LinkFolder: Sendable {
    /// What happened to the folder; given to the `onChange` handler.
    public enum Change: Sendable, Hashable {
        /// A link was made or pointed at a new node (path relative to the root).
        case created(path: String, target: String)
        /// A link of ours was removed (departure, or stale at start).
        case removed(path: String)
        /// Something not ours is in the way, or the name is unsafe: nothing was done.
        case refused(path: String, reason: String)
    }

    /// The manifest's file name in the root.
    public static let manifestName = ".devif-links"

    /// The folder's path as given.
    public let root: String
    private let manager: DeviceManager
    private let filter: InterfaceFilter
    private let onChange: (@Sendable (Change) -> Void)?
    private let state: Mutex<State>

    private struct State: ~Copyable {
        var rootFD: Int32
        /// Relative path -> target, of every link we made and still own.
        var manifest: [String: String]
        var watch: InterfaceWatch?
        var consumer: Task<Void, Never>?
        var stopped = false
        var tempCounter: UInt64 = 0
    }

    /// Opens (creating it and its parents if missing) and locks `root`, and
    /// reads its manifest. Starts nothing: call ``start()``.
    public init(root: String, manager: DeviceManager, filter: InterfaceFilter = .all,
                onChange: (@Sendable (Change) -> Void)? = nil) throws(LinkFolderError) {
        self.root = root
        self.manager = manager
        self.filter = filter
        self.onChange = onChange
        do {
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o755])
        } catch {
            throw LinkFolderError("cannot create the link folder \(root): \(error)")
        }
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            let e = errno
            // O_DIRECTORY | O_NOFOLLOW on a symbolic link fails with ENOTDIR or ELOOP.
            var st = stat()
            let isSymlink = lstat(root, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK
            throw LinkFolderError(isSymlink
                ? "the link folder \(root) is a symbolic link; give the real folder's path"
                : "cannot open the link folder \(root): \(String(cString: strerror(e)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw LinkFolderError("another watcher maintains \(root) (its lock is held); run one watcher per folder")
        }
        state = Mutex(State(rootFD: fd, manifest: Self.readManifest(fd)))
    }

    deinit {
        state.withLock { s in
            s.consumer?.cancel()
            s.watch?.cancel()
            close(s.rootFD)
        }
    }

    /// The links this folder holds now: relative path -> target node.
    public var links: [String: String] { state.withLock { $0.manifest } }

    /// Makes the links of the present instances, removes stale ones of ours,
    /// then follows arrivals and removals until ``stop(removingLinks:)``.
    /// Start it after the manager's first enumeration
    /// (``DeviceManager/waitUntilEnumerated(timeout:)``), or instances not yet
    /// reported count as departed until they arrive. The watch keeps this
    /// object alive until ``stop(removingLinks:)``.
    public func start() {
        let watch = manager.watch(filter)
        let started = state.withLock { s -> Bool in
            guard !s.stopped, s.watch == nil else { return false }
            s.watch = watch
            return true
        }
        guard started else { watch.cancel(); return }
        reconcile(with: watch.snapshot)
        let updates = watch.updates
        let consumer = Task { [self] in
            for await update in updates {
                switch update {
                case .event(let e):
                    switch e.event {
                    case .arrival: apply(arrival: e.interface)
                    case .removal: apply(removal: e.interface)
                    }
                case .overflow:
                    // Events were lost: the manager's present list is the truth.
                    reconcile(with: manager.interfaces(filter))
                }
            }
        }
        state.withLock { $0.consumer = consumer }
    }

    /// Stops following the manager; with `removingLinks`, removes every link
    /// of ours (a link left behind could point at a node number the kernel
    /// later gives another device). Idempotent.
    public func stop(removingLinks: Bool = true) {
        let changes = state.withLock { s -> [Change] in
            guard !s.stopped else { return [] }
            s.stopped = true
            s.watch?.cancel()
            s.consumer?.cancel()
            guard removingLinks else { return [] }
            var changes: [Change] = []
            for path in s.manifest.keys.sorted() { changes += Self.removeOurs(path, &s) }
            Self.writeManifest(&s)
            return changes
        }
        changes.forEach { onChange?($0) }
    }

    // MARK: Applying changes

    private func place(_ i: DeviceInterface) -> (path: String, target: String)? {
        let folder = LinkLayout.folderName(for: i.classGuid, in: manager.catalog)
        guard let node = i.devnode, let path = LinkLayout.relativePath(folder: folder, link: i.symbolicLink.rawValue) else { return nil }
        return (path, node)
    }

    private func apply(arrival i: DeviceInterface) {
        let changes = state.withLock { s -> [Change] in
            guard !s.stopped else { return [] }
            guard let (path, target) = place(i) else {
                return [.refused(path: i.symbolicLink.rawValue, reason: "not a safe single file name, or no device node")]
            }
            let changes = Self.create(path, target: target, &s)
            Self.writeManifest(&s)
            return changes
        }
        changes.forEach { onChange?($0) }
    }

    private func apply(removal i: DeviceInterface) {
        let folder = LinkLayout.folderName(for: i.classGuid, in: manager.catalog)
        guard let path = LinkLayout.relativePath(folder: folder, link: i.symbolicLink.rawValue) else { return }
        let changes = state.withLock { s -> [Change] in
            guard !s.stopped, s.manifest[path] != nil else { return [] }
            let changes = Self.removeOurs(path, &s)
            Self.writeManifest(&s)
            return changes
        }
        changes.forEach { onChange?($0) }
    }

    /// Makes the folder hold exactly the links of `present` (of ours).
    private func reconcile(with present: [DeviceInterface]) {
        var wanted: [String: String] = [:]
        var refused: [Change] = []
        for i in present {
            if let (path, target) = place(i) { wanted[path] = target } else {
                refused.append(.refused(path: i.symbolicLink.rawValue, reason: "not a safe single file name, or no device node"))
            }
        }
        let changes = state.withLock { s -> [Change] in
            guard !s.stopped else { return [] }
            var changes = refused
            for path in s.manifest.keys.sorted() where wanted[path] == nil { changes += Self.removeOurs(path, &s) }
            for path in wanted.keys.sorted() { changes += Self.create(path, target: wanted[path]!, &s) }
            Self.writeManifest(&s)
            return changes
        }
        changes.forEach { onChange?($0) }
    }

    // MARK: File operations (all relative to the root descriptor, under the lock)

    /// Whether `name` in `dirFD` is a symbolic link pointing at `target`.
    private static func isLink(_ dirFD: Int32, _ name: String, to target: String) -> Bool {
        var buffer = [CChar](repeating: 0, count: 4097)
        let n = readlinkat(dirFD, name, &buffer, 4096)
        guard n >= 0 else { return false }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) == target
    }

    private static func split(_ path: String) -> (folder: String, name: String)? {
        guard let slash = path.firstIndex(of: "/") else { return nil }
        let folder = String(path[..<slash]), name = String(path[path.index(after: slash)...])
        guard LinkLayout.isSafeComponent(folder), LinkLayout.isSafeComponent(name) else { return nil }
        return (folder, name)
    }

    /// Opens the class folder (creating it), refusing a symbolic link or a file in its place.
    private static func openFolder(_ folder: String, _ s: inout State, create: Bool) -> Int32? {
        if create { _ = mkdirat(s.rootFD, folder, 0o755) }
        let fd = openat(s.rootFD, folder, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        return fd >= 0 ? fd : nil
    }

    private static func create(_ path: String, target: String, _ s: inout State) -> [Change] {
        guard let (folder, name) = split(path), target.hasPrefix("/"),
              !target.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) else {
            return [.refused(path: path, reason: "unsafe name or target")]
        }
        guard let dirFD = openFolder(folder, &s, create: true) else {
            return [.refused(path: path, reason: "\(folder) is not a folder this watcher can use (a symbolic link or a file is in its place)")]
        }
        defer { close(dirFD) }
        var st = stat()
        let exists = fstatat(dirFD, name, &st, AT_SYMLINK_NOFOLLOW) == 0
        let ours = s.manifest[path].map { recorded in exists && (st.st_mode & S_IFMT) == S_IFLNK && isLink(dirFD, name, to: recorded) } ?? false
        if exists && !ours {
            s.manifest[path] = nil  // whatever is there now is not ours
            return [.refused(path: path, reason: "something this watcher did not create is in the way; left alone")]
        }
        if ours && s.manifest[path] == target { return [] }
        s.tempCounter += 1
        let temp = ".devif-tmp-\(getpid())-\(s.tempCounter)"
        _ = unlinkat(dirFD, temp, 0)  // a leftover of ours from a crash
        guard symlinkat(target, dirFD, temp) == 0 else {
            return [.refused(path: path, reason: "cannot create a link: \(String(cString: strerror(errno)))")]
        }
        if ours {
            // Replace our own link in one step.
            guard renameat(dirFD, temp, dirFD, name) == 0 else {
                let e = errno
                _ = unlinkat(dirFD, temp, 0)
                return [.refused(path: path, reason: "cannot replace the link: \(String(cString: strerror(e)))")]
            }
        } else {
            // A new name: a hard link of the temporary symlink fails with EEXIST
            // instead of replacing whatever appeared there meanwhile.
            let linked = linkat(dirFD, temp, dirFD, name, 0) == 0
            let e = errno
            _ = unlinkat(dirFD, temp, 0)
            guard linked else {
                return [.refused(path: path, reason: e == EEXIST
                    ? "something this watcher did not create is in the way; left alone"
                    : "cannot create the link: \(String(cString: strerror(e)))")]
            }
        }
        s.manifest[path] = target
        return [.created(path: path, target: target)]
    }

    /// Removes `path` if it is still our link; forgets it either way.
    private static func removeOurs(_ path: String, _ s: inout State) -> [Change] {
        guard let recorded = s.manifest.removeValue(forKey: path) else { return [] }
        guard let (folder, name) = split(path), let dirFD = openFolder(folder, &s, create: false) else { return [] }
        defer { close(dirFD) }
        var st = stat()
        guard fstatat(dirFD, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return [] }
        guard (st.st_mode & S_IFMT) == S_IFLNK, isLink(dirFD, name, to: recorded) else {
            return [.refused(path: path, reason: "no longer the link this watcher made; left alone")]
        }
        guard unlinkat(dirFD, name, 0) == 0 else {
            return [.refused(path: path, reason: "cannot remove the link: \(String(cString: strerror(errno)))")]
        }
        return [.removed(path: path)]
    }

    // MARK: The manifest

    private static func readManifest(_ rootFD: Int32) -> [String: String] {
        let fd = openat(rootFD, manifestName, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return [:] }
        defer { close(fd) }
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while data.count < 16 << 20 {
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            data += chunk[0..<n]
        }
        var manifest: [String: String] = [:]
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: "\t", maxSplits: 1)
            // Lines that are not `folder/link<TAB>/target` are ignored: never act on them.
            guard parts.count == 2, split(String(parts[0])) != nil, parts[1].hasPrefix("/") else { continue }
            manifest[String(parts[0])] = String(parts[1])
        }
        return manifest
    }

    private static func writeManifest(_ s: inout State) {
        var text = "# devif link folder: the links its watcher made (path<TAB>target). Do not edit.\n"
        for path in s.manifest.keys.sorted() { text += "\(path)\t\(s.manifest[path]!)\n" }
        s.tempCounter += 1
        let temp = ".devif-links-\(getpid())-\(s.tempCounter).tmp"
        let fd = openat(s.rootFD, temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return }
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            written += n
        }
        close(fd)
        if written == bytes.count { _ = renameat(s.rootFD, temp, s.rootFD, manifestName) } else { _ = unlinkat(s.rootFD, temp, 0) }
    }
}

/// A link folder cannot be used; the message says why and what to do.
public struct LinkFolderError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
