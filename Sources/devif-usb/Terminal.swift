import DevifLinux
import Glibc

// The few things the CLI needs beyond FoundationEssentials, which it uses
// instead of Foundation: Foundation brings CoreFoundation and ICU's tables
// into the static binary (85 MB with them, 36 MB without).

/// Writes `text` to standard output now, after what `print` buffered, so a
/// reader on a pipe sees it at once and in order.
func writeOutput(_ text: String) {
    // `print` writes through stdio's stdout: flush what it holds first.
    fflush(nil)
    writeAll(STDOUT_FILENO, text)
}

/// Writes `devif-usb: LINE` to standard error (unbuffered): a notice or an
/// error, so stdout stays clean for JSON.
func writeNotice(_ line: String) {
    writeAll(STDERR_FILENO, "devif-usb: " + line + "\n")
}

private func writeAll(_ fd: Int32, _ text: String) {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        // Syscalls.write retries EINTR; any other failure (a closed pipe)
        // drops the rest: there is nowhere left to say so.
        guard let n = bytes.withUnsafeBytes({ try? Syscalls.write(fd, $0) }), n > 0 else { return }
        bytes = bytes.dropFirst(n)
    }
}

extension String {
    /// Padded with spaces to `width` characters (never cut).
    func padded(to width: Int) -> String {
        let n = count
        return n >= width ? self : self + String(repeating: " ", count: width - n)
    }
}

/// `path` without its last component ("" when it has no '/').
func folder(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "" }
    return slash == path.startIndex ? "/" : String(path[..<slash])
}

/// The last component of `path`.
func fileName(of path: String) -> String {
    path.lastIndex(of: "/").map { String(path[path.index(after: $0)...]) } ?? path
}

/// Runs `program` with `arguments` and waits: its exit status, 126 when it
/// could not be started, 128 + N when signal N ended it.
func runProgram(_ program: String, _ arguments: [String]) -> Int32 {
    var pid = pid_t()
    let argv = ([program] + arguments).map { strdup($0) } + [nil]
    defer { for p in argv { free(p) } }
    guard posix_spawn(&pid, program, nil, nil, argv, environ) == 0 else { return 126 }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 {
        guard errno == EINTR else { return 126 }
    }
    // WIFEXITED / WEXITSTATUS / WTERMSIG, which Swift cannot import (macros).
    return status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
}
