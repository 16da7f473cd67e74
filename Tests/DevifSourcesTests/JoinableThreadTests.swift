// devif's threads carry names (what top -H, perf and debuggers show).
import DevifLinux
import Glibc
import Synchronization
import Testing

/// The calling thread's name as the kernel has it (its comm).
func currentThreadName() -> String {
    let fd = open("/proc/thread-self/comm", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return "?" }
    defer { close(fd) }
    var bytes = [UInt8](repeating: 0, count: 32)
    let n = read(fd, &bytes, bytes.count)
    return n > 0 ? String(decoding: bytes[..<n].prefix { $0 != 0x0A }, as: UTF8.self) : "?"
}

@Suite struct JoinableThreadTests {
    private static func nameSeen(starting name: String) throws -> String {
        let seen = Mutex("")
        let thread = try JoinableThread(name: name) { seen.withLock { $0 = currentThreadName() } }
        thread.join()
        return seen.withLock { $0 }
    }

    @Test func aThreadRunsUnderItsName() throws {
        #expect(try Self.nameSeen(starting: "devif-test") == "devif-test")
    }

    @Test func aLongNameIsCutToTheKernelsFifteenBytes() throws {
        #expect(try Self.nameSeen(starting: "devif-a-very-long-thread-name") == "devif-a-very-lo")
    }
}
