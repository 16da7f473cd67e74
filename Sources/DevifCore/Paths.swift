import Glibc

/// `name` in `folder`, with exactly one '/' between them.
package func joinPath(_ folder: String, _ name: String) -> String {
    folder.hasSuffix("/") ? folder + name : folder + "/" + name
}

/// Whether `path` (following a symbolic link) is a folder; nil when nothing is there.
package func isDirectory(at path: String) -> Bool? {
    var info = stat()
    guard stat(path, &info) == 0 else { return nil }
    return info.st_mode & S_IFMT == S_IFDIR
}
