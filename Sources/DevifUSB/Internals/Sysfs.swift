// What the USB source needs from sysfs beyond DevifLinux's Sysfs.
import DevifLinux
import Glibc

extension Sysfs {
    /// A decimal attribute (`busnum`, `devnum`, `bAlternateSetting`); nil when
    /// absent, empty or not a number.
    static func decimal(_ path: String) -> Int? {
        guard let text = string(path, limit: 64) else { return nil }
        return Int(text.trimmingASCIIWhitespace())
    }

    /// The names in a directory (no `.`/`..`); empty when it cannot be read.
    static func list(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != ".", name != ".." { names.append(name) }
        }
        return names
    }
}

extension String {
    func trimmingASCIIWhitespace() -> String {
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || (0x09...0x0D).contains($0) }
        let bytes = Array(utf8)
        guard let first = bytes.firstIndex(where: { !isSpace($0) }),
              let last = bytes.lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(decoding: bytes[first...last], as: UTF8.self)
    }
}
