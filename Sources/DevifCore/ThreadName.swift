import CLinux

/// Names the calling thread: what `top -H`, `ps -L`, `perf` and debuggers
/// show (the kernel keeps the first 15 bytes). Every thread devif starts
/// carries one; unnamed, a thread started from Swift concurrency inherits a
/// Dispatch worker's "com.apple.root...".
package func nameCurrentThread(_ name: String) {
    _ = devif_name_thread(name)
}

/// The calling thread's name as the kernel keeps it ("?" if it cannot be read).
package func currentThreadName() -> String {
    var name = [CChar](repeating: 0, count: 16)
    guard devif_thread_name(&name) == 0 else { return "?" }
    return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
