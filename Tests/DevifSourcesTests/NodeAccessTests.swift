// NodeAccess: the sentence a user gets when a device node cannot be opened.
// (Denial itself is checked in the lab, where `rules check` runs as nobody.)
import DevifLinux
import Glibc
import Testing

@Suite struct NodeAccessTests {
    @Test func modeStringIsLsForm() {
        #expect(NodeAccess.modeString(S_IFCHR | 0o660) == "crw-rw----")
        #expect(NodeAccess.modeString(S_IFCHR | 0o600) == "crw-------")
        #expect(NodeAccess.modeString(S_IFREG | 0o755) == "-rwxr-xr-x")
        #expect(NodeAccess.modeString(S_IFDIR | 0o001) == "d--------x")
        #expect(NodeAccess.modeString(0o020664) == "crw-rw-r--")
        #expect(NodeAccess.modeString(0o100600) == "-rw-------")
    }

    @Test func anOpenableNodeHasNoDenial() {
        #expect(NodeAccess.denial("/dev/null") == nil)
    }

    @Test func aMissingNodeSaysSo() throws {
        let text = try #require(NodeAccess.denial("/dev/devif-test-no-such-node"))
        #expect(text == "/dev/devif-test-no-such-node cannot be checked (ENOENT)", "\(text)")
    }
}
