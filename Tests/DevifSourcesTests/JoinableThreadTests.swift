// devif's threads carry names (what top -H, perf and debuggers show).
import DevifCore
import DevifLinux
import Glibc
import Synchronization
import Testing

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
