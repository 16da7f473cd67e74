import Testing
@testable import DevifCore
@Test func versionIsSet() { #expect(!DevifCoreVersion.string.isEmpty) }
