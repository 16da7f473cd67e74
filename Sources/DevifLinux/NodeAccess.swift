import Glibc

/// Whether this process may open a device node read-write, and when not, a
/// sentence for the user: the node's mode and owner beside this process's
/// ids. Each source adds what fixes it (the rule differs per subsystem).
public enum NodeAccess {
    /// nil when allowed (the kernel's own check with the effective ids, ACLs
    /// included); else e.g. "/dev/hidraw0 is crw------- root:root (0600) and
    /// this process (uid 1000, gid 1000) may not open it read-write (EACCES)".
    public static func denial(_ path: String) -> String? {
        guard let error = Syscalls.effectiveAccess(path, R_OK | W_OK) else { return nil }
        let reason = error.codeName ?? "errno \(error.code)"
        guard let info = try? Syscalls.stat(path) else { return "\(path) cannot be checked (\(reason))" }
        let owner = (Syscalls.userName(info.st_uid) ?? String(info.st_uid)) + ":"
            + (Syscalls.groupName(info.st_gid) ?? String(info.st_gid))
        let octal = String(info.st_mode & 0o7777, radix: 8)
        return "\(path) is \(modeString(info.st_mode)) \(owner) (\(String(repeating: "0", count: max(0, 4 - octal.count)) + octal)) "
            + "and this process (uid \(geteuid()), gid \(getegid())) may not open it read-write (\(reason))"
    }

    /// `ls -l`'s form: "crw-rw----".
    public static func modeString(_ mode: mode_t) -> String {
        let type: Character = switch mode & S_IFMT {
        case S_IFCHR: "c"
        case S_IFBLK: "b"
        case S_IFDIR: "d"
        default: "-"
        }
        let letters: [Character] = ["r", "w", "x"]
        return String([type] + (0..<9).map { bit in mode & (0o400 >> mode_t(bit)) != 0 ? letters[bit % 3] : "-" })
    }
}
