import CLinux

/// Names the calling thread: what `top -H`, `ps -L`, `perf` and debuggers
/// show (the kernel keeps the first 15 bytes). Every thread devif starts
/// carries one; unnamed, a thread started from Swift concurrency inherits a
/// Dispatch worker's "com.apple.root...".
package func nameCurrentThread(_ name: String) {
    _ = devif_name_thread(name)
}
