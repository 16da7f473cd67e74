// Heap-allocation counting for tests and benchmarks (not part of the library):
// the fan-out's "0 allocations per published event" is checked by the unit
// tests and reported by the benchmark with this one counter.
import Foundation
import Synchronization

/// Counts heap allocations made by one thread, by pointing the GOT entries for
/// malloc, calloc, realloc, posix_memalign, aligned_alloc and memalign in every
/// loaded shared object (libswiftCore's swift_slowAlloc, which backs every Swift
/// object, array and `UnsafeMutablePointer.allocate`, libdispatch, Foundation,
/// libc, ...) at counting wrappers that forward to the real functions. Works with
/// and without TSan (the "real" functions are then TSan's interceptors).
///
/// Only allocations on the thread passed to `count(on:)` are counted, so tests
/// running in parallel do not disturb the figure. The patch stays installed
/// (it only forwards) for the life of the test process.
public enum AllocationCounter {
    typealias MallocFn = @convention(c) (Int) -> UnsafeMutableRawPointer?
    typealias CallocFn = @convention(c) (Int, Int) -> UnsafeMutableRawPointer?
    typealias ReallocFn = @convention(c) (UnsafeMutableRawPointer?, Int) -> UnsafeMutableRawPointer?
    typealias PosixMemalignFn = @convention(c) (UnsafeMutablePointer<UnsafeMutableRawPointer?>?, Int, Int) -> Int32
    typealias AlignedFn = @convention(c) (Int, Int) -> UnsafeMutableRawPointer?

    nonisolated(unsafe) static var realMalloc: MallocFn!
    nonisolated(unsafe) static var realCalloc: CallocFn!
    nonisolated(unsafe) static var realRealloc: ReallocFn!
    nonisolated(unsafe) static var realPosixMemalign: PosixMemalignFn!
    nonisolated(unsafe) static var realAlignedAlloc: AlignedFn!
    nonisolated(unsafe) static var realMemalign: AlignedFn!
    static let countedThread = Atomic<UInt>(0)
    static let allocations = Atomic<Int>(0)

    @inline(__always) static func note() {
        if UInt(pthread_self()) == countedThread.load(ordering: .relaxed) {
            if tracing {
                // Only the counted thread gets here: the flag needs no lock.
                if inTrace { return }
                inTrace = true
                trace()
                inTrace = false
            }
            allocations.add(1, ordering: .relaxed)
        }
    }

    /// DEVIF_ALLOC_TRACE set: each counted allocation prints its call stack
    /// on stderr (raw addresses and exported names; `addr2line -f -C -e
    /// BINARY ADDRESS` names the rest), to find what a count is made of.
    nonisolated(unsafe) static let tracing = getenv("DEVIF_ALLOC_TRACE") != nil
    nonisolated(unsafe) static var inTrace = false

    // execinfo.h is not in the Glibc module map; look them up.
    private typealias BacktraceFn = @convention(c) (UnsafeMutablePointer<UnsafeMutableRawPointer?>?, Int32) -> Int32
    private typealias SymbolsFn = @convention(c) (UnsafePointer<UnsafeMutableRawPointer?>?, Int32, Int32) -> Void

    static func trace() {
        let backtrace = real("backtrace", BacktraceFn.self)
        let symbols = real("backtrace_symbols_fd", SymbolsFn.self)
        withUnsafeTemporaryAllocation(of: UnsafeMutableRawPointer?.self, capacity: 32) { frames in
            let n = backtrace(frames.baseAddress, 32)
            _ = "allocation:\n".withCString { write(2, $0, strlen($0)) }
            symbols(frames.baseAddress, n, 2)
        }
    }

    nonisolated(unsafe) static let hooks: [(String, UnsafeRawPointer)] = [
        ("malloc", unsafeBitCast({ n in note(); return realMalloc(n) } as MallocFn, to: UnsafeRawPointer.self)),
        ("calloc", unsafeBitCast({ n, s in note(); return realCalloc(n, s) } as CallocFn, to: UnsafeRawPointer.self)),
        ("realloc", unsafeBitCast({ p, n in note(); return realRealloc(p, n) } as ReallocFn, to: UnsafeRawPointer.self)),
        ("posix_memalign", unsafeBitCast({ p, a, n in note(); return realPosixMemalign(p, a, n) } as PosixMemalignFn, to: UnsafeRawPointer.self)),
        ("aligned_alloc", unsafeBitCast({ a, n in note(); return realAlignedAlloc(a, n) } as AlignedFn, to: UnsafeRawPointer.self)),
        ("memalign", unsafeBitCast({ a, n in note(); return realMemalign(a, n) } as AlignedFn, to: UnsafeRawPointer.self)),
    ]

    /// How many GOT entries were redirected (0 means counting would see nothing).
    public static let patchedEntries: Int = install()

    private struct PhdrInfo {   // struct dl_phdr_info's leading fields (link.h)
        var addr: UInt
        var name: UnsafePointer<CChar>?
        var phdr: UnsafePointer<Elf64_Phdr>
        var phnum: UInt16
    }
    private typealias Visit = @convention(c) (UnsafeMutableRawPointer?, Int, UnsafeMutableRawPointer?) -> Int32
    private typealias Iterate = @convention(c) (Visit, UnsafeMutableRawPointer?) -> Int32
    nonisolated(unsafe) private static var patched = 0

    private static func real<T>(_ name: String, _: T.Type) -> T {
        unsafeBitCast(dlsym(UnsafeMutableRawPointer(bitPattern: 0), name)!, to: T.self)
    }

    private static func install() -> Int {
        realMalloc = real("malloc", MallocFn.self)
        realCalloc = real("calloc", CallocFn.self)
        realRealloc = real("realloc", ReallocFn.self)
        realPosixMemalign = real("posix_memalign", PosixMemalignFn.self)
        realAlignedAlloc = real("aligned_alloc", AlignedFn.self)
        realMemalign = real("memalign", AlignedFn.self)
        _ = hooks
        _ = (tracing, inTrace)
        note()   // initialise the globals the hooks use before any hook can run
        // dl_iterate_phdr is not in the Glibc module map; look it up.
        let iterate = real("dl_iterate_phdr", Iterate.self)
        _ = iterate({ raw, _, _ in
            let info = raw!.assumingMemoryBound(to: PhdrInfo.self).pointee
            AllocationCounter.patch(base: info.addr, phdr: info.phdr, count: Int(info.phnum))
            return 0
        }, nil)
        return patched
    }

    private static func patch(base: UInt, phdr: UnsafePointer<Elf64_Phdr>, count: Int) {
        guard let dynamic = (0..<count).first(where: { phdr[$0].p_type == PT_DYNAMIC }),
              var d = UnsafePointer<Elf64_Dyn>(bitPattern: base + UInt(phdr[dynamic].p_vaddr)) else { return }
        var symtab: UInt = 0, strtab: UInt = 0, jmprel: UInt = 0, pltSize: UInt = 0, rela: UInt = 0, relaSize: UInt = 0
        while d.pointee.d_tag != DT_NULL {
            let v = UInt(d.pointee.d_un.d_ptr)
            switch Int32(d.pointee.d_tag) {
            case DT_SYMTAB: symtab = v
            case DT_STRTAB: strtab = v
            case DT_JMPREL: jmprel = v
            case DT_PLTRELSZ: pltSize = v
            case DT_RELA: rela = v
            case DT_RELASZ: relaSize = v
            default: break
            }
            d += 1
        }
        // The loader usually relocates these in place; if not, they are offsets.
        func absolute(_ p: UInt) -> UInt { p != 0 && p < base ? p + base : p }
        symtab = absolute(symtab); strtab = absolute(strtab); jmprel = absolute(jmprel); rela = absolute(rela)
        guard symtab != 0, strtab != 0 else { return }
        let page = UInt(sysconf(Int32(_SC_PAGESIZE)))
        for (start, size) in [(jmprel, pltSize), (rela, relaSize)] where start != 0 {
            let relocations = UnsafePointer<Elf64_Rela>(bitPattern: start)!
            for j in 0..<Int(size) / MemoryLayout<Elf64_Rela>.stride {
                let r = relocations[j]
                let type = UInt32(truncatingIfNeeded: r.r_info)
                guard type == 7 /* R_X86_64_JUMP_SLOT */ || type == 6 /* R_X86_64_GLOB_DAT */ else { continue }
                let symbol = UnsafePointer<Elf64_Sym>(bitPattern: symtab)![Int(r.r_info >> 32)]
                let name = String(cString: UnsafePointer<CChar>(bitPattern: strtab + UInt(symbol.st_name))!)
                guard let hook = hooks.first(where: { $0.0 == name })?.1 else { continue }
                let slot = base + UInt(r.r_offset)
                // RELRO pages are read-only after relocation; leave them writable (test process only).
                mprotect(UnsafeMutableRawPointer(bitPattern: slot / page * page), Int(page), PROT_READ | PROT_WRITE)
                UnsafeMutablePointer<UnsafeRawPointer>(bitPattern: slot)!.pointee = hook
                patched += 1
            }
        }
    }

    /// The number of heap allocations `body` makes on the calling thread.
    public static func count(_ body: () -> Void) -> Int {
        precondition(patchedEntries > 0, "no allocation entry points were found to patch")
        // One count at a time: tests of other suites run in parallel, and a
        // second count would point the counter at its own thread and then
        // switch it off under the first (seen in CI: 2 of 101 counted).
        return counting.withLock { _ in
            let before = allocations.load(ordering: .relaxed)
            countedThread.store(UInt(pthread_self()), ordering: .relaxed)
            body()
            countedThread.store(0, ordering: .relaxed)
            return allocations.load(ordering: .relaxed) - before
        }
    }
    private static let counting = Mutex<Void>(())
}
