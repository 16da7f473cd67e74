// Shared by every fuzz target: the libFuzzer entry point calls `fuzz(_:)`,
// which each target file defines. The bytes are copied into an Array so the
// parsers see what they see in production (an [UInt8] from a device).
@_cdecl("LLVMFuzzerTestOneInput")
public func llvmFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    fuzz(bytes)
    return 0
}

// The targets are built with -O, where the standard library's precondition
// traps without its message. These shadow it in this module, so a broken
// invariant says which ("Fatal error: <message>", file and line) in any build.
func precondition(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String = String(),
                  file: StaticString = #file, line: UInt = #line) {
    if !condition() { fatalError(message(), file: file, line: line) }
}

func preconditionFailure(_ message: @autoclosure () -> String = String(),
                         file: StaticString = #file, line: UInt = #line) -> Never {
    fatalError(message(), file: file, line: line)
}
