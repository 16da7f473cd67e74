import ArgumentParser
import Devif
struct DevifUSB: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "devif-usb")
}
DevifUSB.main()
