/// SHA-256 (FIPS 180-4), in pure Swift so the core needs no C library.
///
/// Used to shorten over-long device strings in symbolic links; written to be
/// reasonably quick even in debug builds, not tuned for bulk data.
public struct SHA256: Sendable {
    private var state: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32) = (
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
    )
    /// Input not yet compressed (always fewer than 64 bytes between calls).
    private var pending: [UInt8] = []
    private var byteCount: UInt64 = 0

    /// A hash with no input yet.
    public init() {}

    /// The 32-byte digest of `bytes`.
    public static func hash(_ bytes: some Sequence<UInt8>) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(bytes)
        return hasher.finalize()
    }

    /// Feeds more input.
    public mutating func update(_ bytes: some Sequence<UInt8>) {
        var input = pending
        input.append(contentsOf: bytes)
        byteCount &+= UInt64(input.count - pending.count)
        let whole = input.count / 64 * 64
        input.withUnsafeBufferPointer { buffer in
            var offset = 0
            while offset < whole {
                compress(UnsafeBufferPointer(rebasing: buffer[offset..<(offset + 64)]))
                offset += 64
            }
        }
        pending = Array(input[whole...])
    }

    /// Pads, processes the last block(s) and returns the 32-byte digest.
    public consuming func finalize() -> [UInt8] {
        let bitCount = byteCount &* 8
        let padded = pending.count < 56 ? 64 : 128
        var tail = [UInt8](repeating: 0, count: padded)
        for index in pending.indices { tail[index] = pending[index] }
        tail[pending.count] = 0x80
        for index in 0..<8 { tail[padded - 1 - index] = UInt8(truncatingIfNeeded: bitCount >> UInt64(8 * index)) }
        tail.withUnsafeBufferPointer { buffer in
            compress(UnsafeBufferPointer(rebasing: buffer[0..<64]))
            if padded == 128 { compress(UnsafeBufferPointer(rebasing: buffer[64..<128])) }
        }
        var digest = [UInt8](repeating: 0, count: 32)
        withUnsafeBytes(of: state) { words in
            let words = words.bindMemory(to: UInt32.self)
            for index in 0..<8 {
                let word = words[index]
                digest[4 * index] = UInt8(word >> 24)
                digest[4 * index + 1] = UInt8(truncatingIfNeeded: word >> 16)
                digest[4 * index + 2] = UInt8(truncatingIfNeeded: word >> 8)
                digest[4 * index + 3] = UInt8(truncatingIfNeeded: word)
            }
        }
        return digest
    }

    /// One 64-byte block. Written with while loops and inline rotations: in
    /// debug builds, range iterators and helper calls cost more than the arithmetic.
    private mutating func compress(_ block: UnsafeBufferPointer<UInt8>) {
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { w in
            var t = 0
            while t < 16 {
                w[t] = UInt32(block[4 * t]) << 24 | UInt32(block[4 * t + 1]) << 16
                    | UInt32(block[4 * t + 2]) << 8 | UInt32(block[4 * t + 3])
                t += 1
            }
            while t < 64 {
                let x = w[t - 15], y = w[t - 2]
                let s0 = (x >> 7 | x << 25) ^ (x >> 18 | x << 14) ^ (x >> 3)
                let s1 = (y >> 17 | y << 15) ^ (y >> 19 | y << 13) ^ (y >> 10)
                w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
                t += 1
            }
            var (a, b, c, d, e, f, g, h) = state
            SHA256.k.withUnsafeBufferPointer { k in
                var t = 0
                while t < 64 {
                    let s1 = (e >> 6 | e << 26) ^ (e >> 11 | e << 21) ^ (e >> 25 | e << 7)
                    let choice = (e & f) ^ (~e & g)
                    let t1 = h &+ s1 &+ choice &+ k[t] &+ w[t]
                    let s0 = (a >> 2 | a << 30) ^ (a >> 13 | a << 19) ^ (a >> 22 | a << 10)
                    let majority = (a & b) ^ (a & c) ^ (b & c)
                    let t2 = s0 &+ majority
                    h = g; g = f; f = e; e = d &+ t1
                    d = c; c = b; b = a; a = t1 &+ t2
                    t += 1
                }
            }
            state = (state.0 &+ a, state.1 &+ b, state.2 &+ c, state.3 &+ d,
                     state.4 &+ e, state.5 &+ f, state.6 &+ g, state.7 &+ h)
        }
    }

    private static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]
}
