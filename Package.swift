// swift-tools-version:6.0
// devif: the device interface model (classes, instances, symbolic links,
// hotplug, handles) for Linux USB and HID devices.
//
// Linux only (libusb, hidraw, udev, usbfs). Targets follow the pipeline in
// ARCHITECTURE.md:
//   DevifCore            pure Swift (and CLinux, a header for prctl): classes, catalog, snapshots, classifier,
//                        symbolic links, registry, fan-out, handle table
//   DevifRegistrySQLite  the registry's storage (SQLite, WAL) behind a core protocol
//   DevifLinux           syscalls, eventfd, kernel uevents, sysfs (shared by the sources)
//   DevifUSB             the libusb source and USB handles   (CLibUSB)
//   DevifHID             the hidraw source and HID handles   (CHIDAPI, CUdev)
//   Devif                the manager that wires sources to the core
//   devif-usb            the command-line tool
//   devif-lab-suite      the lab test suite, run inside the lab VM
//   Examples/            example I/O tools: hid-echo, bulk-loopback, bulk-stream, hid-monitor
//   devif-bench          the benchmark's devif side (Benchmarks/)
import PackageDescription

let exampleDependencies: [Target.Dependency] = [
    "Devif", "DevifSupport", .product(name: "ArgumentParser", package: "swift-argument-parser"),
]

// devif-usb links the Swift runtime statically: a process then maps one
// file instead of about fifteen shared libraries (start-up and idle RSS; see
// Benchmarks/README.md, rows list-32 and idle-rss). It uses
// FoundationEssentials, not Foundation, which would bring CoreFoundation and
// ICU's tables (37 MB) into the binary (85 MB with them, 36 MB without). Its archives
// depend on each other in a cycle, hence the linker group.
// Not position-independent: as a PIE, the dynamic loader first patched the
// binary's 45,000 relative relocations, writing to some thousand pages
// (2 ms of a 10 ms `devif-usb list` on the host, 65 ms of every run in the
// lab VM), on every start, including the ones udev makes per device event.
// Its image then sits at a fixed address; the stack, the heap and the C
// libraries it loads (libusb, libudev, hidapi, SQLite) are still placed at
// random, and its own code is Swift, bounds-checked.
let staticSwiftRuntime: [LinkerSetting] = [
    .unsafeFlags(["-static-stdlib", "-Xlinker", "--start-group"]
        + ["FoundationEssentials", "_FoundationCollections", "_FoundationCShims"].flatMap { ["-Xlinker", "-l:lib\($0).a"] }
        + ["-Xlinker", "--end-group", "-lstdc++", "-Xclang-linker", "-no-pie"],
        .when(platforms: [.linux])),
]

let package = Package(
    name: "devif",
    products: [
        .library(name: "Devif", targets: ["Devif"]),
        .library(name: "DevifCore", targets: ["DevifCore"]),
        .executable(name: "devif-usb", targets: ["devif-usb"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        // `swift package generate-documentation` (DocC); CI builds the docs with it.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
    ],
    targets: [
        // C libraries, found through pkg-config; each module map is the whole shim.
        .systemLibrary(name: "CLibUSB", pkgConfig: "libusb-1.0",
                       providers: [.apt(["libusb-1.0-0-dev"])]),
        .systemLibrary(name: "CHIDAPI", pkgConfig: "hidapi-hidraw",
                       providers: [.apt(["libhidapi-dev"])]),
        .systemLibrary(name: "CUdev", pkgConfig: "libudev",
                       providers: [.apt(["libudev-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3",
                       providers: [.apt(["libsqlite3-dev"])]),
        // libc calls Swift cannot make (variadic ones), as static inline functions.
        .systemLibrary(name: "CLinux"),

        .target(name: "DevifCore", dependencies: ["CLinux"], exclude: ["Catalog/CATALOG-FORMAT.md", "Links/LINK-FORMAT.md"]),
        .target(name: "DevifRegistrySQLite", dependencies: ["DevifCore", "CSQLite"]),
        // Linux plumbing both sources share: syscall wrappers, eventfd, netlink
        // kernel uevents (the fallback when udevd is absent), sysfs reading.
        .target(name: "DevifLinux", dependencies: ["DevifCore"]),
        .target(name: "DevifUSB", dependencies: ["DevifCore", "DevifLinux", "CLibUSB"]),
        .target(name: "DevifHID", dependencies: ["DevifCore", "DevifLinux", "CHIDAPI", "CUdev"]),
        .target(name: "Devif", dependencies: [
            "DevifCore", "DevifLinux", "DevifRegistrySQLite", "DevifUSB", "DevifHID",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "devif-usb", dependencies: [
            "Devif",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], linkerSettings: staticSwiftRuntime),

        // Example I/O tools (Examples/README.md); DevifSupport is what they share.
        .target(name: "DevifSupport", dependencies: [
            "Devif", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Examples/Support"),
        .executableTarget(name: "hid-echo", dependencies: exampleDependencies, path: "Examples/hid-echo"),
        .executableTarget(name: "bulk-loopback", dependencies: exampleDependencies, path: "Examples/bulk-loopback"),
        .executableTarget(name: "bulk-stream", dependencies: exampleDependencies, path: "Examples/bulk-stream"),
        .executableTarget(name: "hid-monitor", dependencies: exampleDependencies, path: "Examples/hid-monitor"),

        // Counts heap allocations (GOT patching); shared by the unit tests and the benchmark.
        .target(name: "AllocationCounting", path: "Tests/Support/AllocationCounting"),
        // A seeded generator, so a failing property or fuzz round can be repeated.
        .target(name: "SeededRandom", path: "Tests/Support/SeededRandom"),
        .testTarget(name: "DevifCoreTests", dependencies: [
            "DevifCore", "DevifRegistrySQLite", "registry-crash-writer", "AllocationCounting", "SeededRandom",
        ]),
        // The manager's pipeline driven by a fake source: fast, deterministic.
        .testTarget(name: "DevifManagerTests", dependencies: [
            "Devif", "DevifCore", "SeededRandom", .product(name: "Logging", package: "swift-log"),
        ]),
        // Unit tests of the sources' pure helpers (descriptor parsing, strings, errors).
        .testTarget(name: "DevifSourcesTests", dependencies: [
            "DevifCore", "DevifUSB", "DevifLinux", "DevifHID", "SeededRandom", "AllocationCounting",
        ]),
        // A child process the registry's crash test kills with SIGKILL mid-commit.
        .executableTarget(name: "registry-crash-writer",
                          dependencies: ["DevifCore", "DevifRegistrySQLite"],
                          path: "Tests/RegistryCrashWriter"),
        // Not a unit-test bundle: an executable that Lab/test runs inside the VM.
        .executableTarget(name: "devif-lab-suite",
                          dependencies: ["Devif", "DevifHID", "DevifUSB", "CLibUSB", "CHIDAPI", "CUdev", "SeededRandom"],
                          path: "Tests/LabSuite"),

        // The benchmark's devif side (Benchmarks/README.md; run by Benchmarks/run,
        // built in release). The C baselines it is compared with are in Benchmarks/baselines.
        .executableTarget(name: "devif-bench", dependencies: [
            "Devif", "DevifCore", "AllocationCounting", "SeededRandom", "CLibUSB",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Benchmarks/devif-bench"),
    ],
    swiftLanguageModes: [.v6]
)
