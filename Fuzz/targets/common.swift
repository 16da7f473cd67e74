// Shared by every fuzz target: the libFuzzer entry point calls `fuzz(_:)`,
// which each target file defines. The bytes are copied into an Array so the
// parsers see what they see in production (an [UInt8] from a device).
@_cdecl("LLVMFuzzerTestOneInput")
public func llvmFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    fuzz(bytes)
    return 0
}
