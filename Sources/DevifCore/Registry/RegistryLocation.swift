/// Where the registry file lives by default, and how that is overridden.
///
/// In order: an explicit path from the caller; the `DEVIF_REGISTRY`
/// environment variable; `/var/lib/devif/registry.sqlite` for root; and
/// `$XDG_STATE_HOME/devif/registry.sqlite` (default
/// `~/.local/state/devif/registry.sqlite`) for any other user.
public struct RegistryLocation: Sendable, Equatable {
    /// The environment variable that overrides the default location.
    public static let environmentVariable = "DEVIF_REGISTRY"
    /// Root's registry.
    public static let systemPath = "/var/lib/devif/registry.sqlite"

    /// Where a resolved location came from.
    public enum Source: Sendable, Equatable {
        /// `parameter`: the caller's explicit path; `environment`: `DEVIF_REGISTRY`;
        /// `system`: root's ``RegistryLocation/systemPath``; `user`: the user's XDG
        /// state folder.
        case parameter, environment, system, user
    }

    /// The registry file.
    public var path: String
    /// The folder holding it (created if missing).
    public var directory: String
    /// The mode to create the folder with: 0755 for root's (others may read
    /// the registry), 0700 for a user's (XDG state is private).
    public var directoryMode: UInt16
    /// Where the path came from.
    public var source: Source

    /// Works out the registry's location without touching the file system.
    ///
    /// - Parameters:
    ///   - explicitPath: a path the caller chose; wins over everything.
    ///   - environment: the process environment (`DEVIF_REGISTRY`, `XDG_STATE_HOME`, `HOME`).
    ///   - effectiveUID: 0 selects the system location.
    ///   - home: the user's home directory when `HOME` is unset (from the password database);
    ///     evaluated only when needed.
    public static func resolve(explicitPath: String? = nil, environment: [String: String],
                               effectiveUID: UInt32, home: @autoclosure () -> String? = nil) throws(RegistryError) -> RegistryLocation {
        let isRoot = effectiveUID == 0
        let mode: UInt16 = isRoot ? 0o755 : 0o700
        if let explicitPath, !explicitPath.isEmpty {
            return RegistryLocation(path: explicitPath, directory: parent(of: explicitPath),
                                    directoryMode: mode, source: .parameter)
        }
        if let fromEnvironment = environment[environmentVariable], !fromEnvironment.isEmpty {
            return RegistryLocation(path: fromEnvironment, directory: parent(of: fromEnvironment),
                                    directoryMode: mode, source: .environment)
        }
        if isRoot {
            return RegistryLocation(path: systemPath, directory: parent(of: systemPath),
                                    directoryMode: mode, source: .system)
        }
        // The XDG base directory spec says relative values are invalid and must be ignored.
        let state: String
        if let xdg = environment["XDG_STATE_HOME"], xdg.hasPrefix("/") {
            state = xdg
        } else if let home = environment["HOME"].flatMap({ $0.hasPrefix("/") ? $0 : nil })
                    ?? home().flatMap({ $0.hasPrefix("/") ? $0 : nil }) {
            state = joinPath(home, ".local/state")
        } else {
            throw RegistryError(.location,
                                message: "cannot place the registry: neither XDG_STATE_HOME nor HOME is an absolute path",
                                recovery: "Set \(environmentVariable) to the registry file's path")
        }
        let directory = joinPath(state, "devif")
        return RegistryLocation(path: joinPath(directory, "registry.sqlite"), directory: directory,
                                directoryMode: mode, source: .user)
    }

    private static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }
}
