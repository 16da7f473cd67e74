// hid-monitor: prints the input reports of every present and future instance
// of a HID class as they come, following arrivals and removals, until
// interrupted.
//
//   hid-monitor [--class C] [--json]
import ArgumentParser
import Devif
import DevifSupport
import Foundation
import Glibc
import Synchronization

@main
struct HIDMonitor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hid-monitor",
        abstract: "Prints the input reports of every instance of a HID class, following arrivals and removals.",
        discussion: """
            Opens every present instance of the class and each one that arrives, and \
            prints one line per input report (time, symbolic link, bytes in hex), per \
            arrival and per removal. A reader that falls behind is told how many reports \
            it missed (an "overflow" line), never silently. Stops on Ctrl-C (exit 0), or \
            after --reports reports.

            Exit status: 0 done or interrupted; 64 bad class.
            """)

    @Option(name: .customLong("class"), help: "The class: a GUID or a class name (default: hid, every HID device).")
    var classArgument = "hid"

    @Option(help: "Stop after this many reports (0: never).")
    var reports = 0

    @OptionGroup var options: ExampleOptions

    func validate() throws {
        guard reports >= 0 else { throw ValidationError("--reports must be 0 or more") }
    }

    struct Line: Codable {
        let event: String
        let link: String
        var data: String?
        var missed: UInt64?
        var reason: String?
        let time: String
    }

    func run() async throws {
        signal(SIGINT) { _ in Glibc.exit(0) }
        signal(SIGTERM) { _ in Glibc.exit(0) }
        let manager = try await startManager("hid-monitor", options)
        let guid: GUID
        if let c = manager.catalog.lookup(classArgument) { guid = c.guid }
        else if let g = try? GUID(parsing: classArgument) { guid = g }
        else {
            complain("hid-monitor", "--class \(classArgument.debugDescription): not a GUID nor a class name (see `devif-usb classes`)")
            throw ExampleExit.usage
        }
        let printer = Printer(json: options.json, limit: reports)
        let watch = manager.watch(InterfaceFilter(classGuid: guid, kind: .hid))
        let readers = Mutex<[String: Task<Void, Never>]>([:])
        @Sendable func follow(_ link: String) {
            let handle: HIDHandle
            do { handle = try manager.openHID(link) } catch {
                printer.emit(Line(event: "error", link: link, reason: error.description, time: Printer.now()))
                return
            }
            // Subscribed before the arrival line: every report after it is printed.
            let subscription = handle.inputReports(capacity: 1024)
            printer.emit(Line(event: "arrival", link: link, time: Printer.now()))
            let task = Task {
                for await delivery in subscription {
                    switch delivery {
                    case .event(.report(let r)):
                        printer.emit(Line(event: "report", link: link, data: hex(r.array), time: Printer.now()))
                    case .event(.ended(let why)):
                        if why != .closed, why != .deviceRemoved {
                            printer.emit(Line(event: "error", link: link, reason: why.description, time: Printer.now()))
                        }
                    case .overflow(let missed):
                        printer.emit(Line(event: "overflow", link: link, missed: missed, time: Printer.now()))
                    }
                }
                handle.close()
            }
            readers.withLock { $0[link] = task }
        }
        for i in watch.snapshot { follow(i.symbolicLink.rawValue) }
        for await update in watch.updates {
            switch update {
            case .event(let e) where e.event == .arrival:
                follow(e.interface.symbolicLink.rawValue)
            case .event(let e):
                printer.emit(Line(event: "removal", link: e.interface.symbolicLink.rawValue, time: Printer.now()))
                _ = readers.withLock { $0.removeValue(forKey: e.interface.symbolicLink.rawValue) }
            case .overflow(let missed):
                printer.emit(Line(event: "overflow", link: "", missed: missed, time: Printer.now()))
                for i in manager.interfaces(InterfaceFilter(classGuid: guid, kind: .hid))
                where readers.withLock({ $0[i.symbolicLink.rawValue] == nil }) { follow(i.symbolicLink.rawValue) }
            }
        }
    }
}

func hex(_ bytes: [UInt8]) -> String {
    bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
}

/// Prints lines one at a time from any task; exits after `limit` reports.
final class Printer: Sendable {
    let json: Bool
    let limit: Int
    private let count = Mutex(0)

    init(json: Bool, limit: Int) {
        self.json = json
        self.limit = limit
    }

    static func now() -> String {
        let t = Date().timeIntervalSince1970
        return String(format: "%.6f", t)
    }

    func emit(_ line: HIDMonitor.Line) {
        count.withLock { n in
            if json {
                printJSON(line)
            } else {
                var text = "\(line.time) \(line.event) \(line.link)"
                if let d = line.data { text += " " + d }
                if let m = line.missed { text += " missed \(m)" }
                if let r = line.reason { text += " (\(r))" }
                printLine(text)
            }
            if line.event == "report" {
                n += 1
                if limit > 0, n >= limit { Glibc.exit(0) }
            }
        }
    }
}
