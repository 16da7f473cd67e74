// registry-crash-writer <db path> [--count N] [--prefix P]
//
// A child process for the registry's crash and two-writer tests: opens the
// SQLite registry at <db path> and commits one change per loop iteration
// (an arrival of a new link, then its removal, and so on), writing each
// committed sequence number on its own line to stdout only after the commit
// returned. Runs N iterations, or until killed when --count is absent.
// Exit status: 0 done, 1 registry error, 2 usage.
import DevifCore
import DevifRegistrySQLite
import Foundation

func fail(_ message: String, status: Int32) -> Never {
    FileHandle.standardError.write(Data("registry-crash-writer: \(message)\n".utf8))
    exit(status)
}

var arguments = CommandLine.arguments.dropFirst()
var path: String?
var count: Int?
var prefix = "writer-\(getpid())"
while let argument = arguments.popFirst() {
    switch argument {
    case "--count":
        guard let value = arguments.popFirst().flatMap({ Int($0) }), value >= 0 else {
            fail("--count needs a non-negative number", status: 2)
        }
        count = value
    case "--prefix":
        guard let value = arguments.popFirst(), !value.isEmpty else { fail("--prefix needs a value", status: 2) }
        prefix = value
    default:
        guard path == nil, !argument.hasPrefix("-") else {
            fail("usage: registry-crash-writer <db path> [--count N] [--prefix P]", status: 2)
        }
        path = argument
    }
}
guard let path else { fail("usage: registry-crash-writer <db path> [--count N] [--prefix P]", status: 2) }

do {
    let registry = try InstanceRegistry(store: SQLiteRegistryStore(path: path))
    var iteration = 0
    while count.map({ iteration < $0 }) ?? true {
        // Even iterations plug a new instance, odd ones unplug it: every commit is a change.
        let link = "usb#vid_1209&pid_0001#\(prefix)-\(iteration / 2)#{a5dcbf10-6530-11d2-901f-00c04fb951ed}"
        let change: RegistryChange?
        if iteration % 2 == 0 {
            change = try registry.recordArrival(RegistryRecord(
                symbolicLink: link, classGuid: "{a5dcbf10-6530-11d2-901f-00c04fb951ed}", kind: .usb,
                vendorId: 0x1209, productId: 0x0001, serialNumber: "\(prefix)-\(iteration / 2)",
                attributes: ["iteration": String(iteration)]))
        } else {
            change = try registry.recordRemoval(link: link)
        }
        guard let change else { fail("iteration \(iteration) committed no change for \(link)", status: 1) }
        // FileHandle.write is a direct write(2): nothing buffered, so a line
        // on the pipe always means that commit returned.
        FileHandle.standardOutput.write(Data("\(change.seq)\n".utf8))
        iteration += 1
    }
} catch {
    fail("\(error)", status: 1)
}
