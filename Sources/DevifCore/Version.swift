public enum DevifCoreVersion { public static let string = "0.1.0" }
