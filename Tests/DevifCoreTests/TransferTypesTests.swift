import Testing
@testable import DevifCore

/// The typed transfer values: endpoint addresses, control requests (their
/// bmRequestType can never contradict the call's direction) and the one
/// handle error's text.
@Suite struct TransferTypesTests {
    @Test func endpointAddressesFromPartsAndBytesAgree() {
        #expect(EndpointAddress.in(1).rawValue == 0x81)
        #expect(EndpointAddress.out(2).rawValue == 0x02)
        let literal: EndpointAddress = 0x83
        #expect(literal.number == 3 && literal.direction == .in && literal.isIn)
        #expect(EndpointAddress(number: 0x1F, direction: .out).rawValue == 0x0F, "numbers are 4 bits")
        #expect(EndpointAddress(rawValue: 0x02).description == "0x02 OUT")
        #expect(EndpointAddress.in(1).description == "0x81 IN")
        #expect(EndpointAddress.out(1) < EndpointAddress.in(1))
    }

    @Test func controlRequestTypeComesFromKindRecipientAndTheCall() {
        let vendor = ControlRequest.vendor(request: 0xD2, to: .interface)
        #expect(vendor.requestType(in: true) == 0xC1)
        #expect(vendor.requestType(in: false) == 0x41)
        #expect(ControlRequest.class(request: 0x09, value: 0x0200).requestType(in: false) == 0x21)
        let status = ControlRequest.getStatus(.endpoint, index: 0x81)
        #expect(status.requestType(in: true) == 0x82 && status.request == 0 && status.index == 0x81)
        let halt = ControlRequest.setFeature(.endpointHalt, endpoint: .in(1))
        #expect(halt.requestType(in: false) == 0x02 && halt.request == 3 && halt.value == 0 && halt.index == 0x81)
        let clear = ControlRequest.clearFeature(.endpointHalt, endpoint: .out(2))
        #expect(clear.request == 1 && clear.index == 0x02 && clear.recipient == .endpoint)
        let wakeup = ControlRequest.setFeature(.deviceRemoteWakeup)
        #expect(wakeup.recipient == .device && wakeup.value == 1 && wakeup.index == 0)
        let descriptor = ControlRequest.getDescriptor(type: 3, index: 2, language: 0x0409)
        #expect(descriptor.requestType(in: true) == 0x80 && descriptor.request == 6)
        #expect(descriptor.value == 0x0302 && descriptor.index == 0x0409)
        #expect(ControlRequest.getInterface(1).requestType(in: true) == 0x81)
    }

    @Test func handleErrorsSayWhoWhatBelowAndWhatToDo() {
        let e = HandleError(.permissionDenied, link: "usb#vid_1209&pid_0001#S#{x}", detail: "open(/dev/bus/usb/001/002)",
                            underlying: .errno(13))
        #expect(e == .permissionDenied && e != .busy)
        #expect(e.code == .permissionDenied)
        #expect(e.description == "usb#vid_1209&pid_0001#S#{x}: " + e.advice + " (open(/dev/bus/usb/001/002); errno 13)")
        #expect(e.advice.contains("devif-usb rules check"))
        let stall = HandleError(.stall, link: "", detail: "", underlying: .libusb(code: -9, name: "LIBUSB_ERROR_PIPE"))
        #expect(stall.description == stall.advice + " (LIBUSB_ERROR_PIPE -9)")
        #expect(HandleError.closed.naming("L").link == "L")
    }
}
