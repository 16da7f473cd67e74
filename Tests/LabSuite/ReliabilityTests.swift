// Reliability and security in the lab (issue 9): storms, surprise removal,
// leaks, hostile devices.
import Foundation

func registerReliabilityTests(_ runner: inout LabRunner) {
}
