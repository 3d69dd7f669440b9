import Foundation

/// MD5 (RFC 1321), used only to place servers and keys on the ketama ring,
/// where it is part of the wire-compatible algorithm rather than security.
enum MD5 {
    static func digest<Bytes: Collection<UInt8>>(_ input: Bytes) -> [UInt8] {
        var message = Array(input)
        let bitLength = UInt64(message.count) * 8
        message.append(0x80)
        while message.count % 64 != 56 { message.append(0) }
        withUnsafeBytes(of: bitLength.littleEndian) { message.append(contentsOf: $0) }

        var state: (UInt32, UInt32, UInt32, UInt32) = (0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476)
        for chunkStart in stride(from: 0, to: message.count, by: 64) {
            let words = (0..<16).map { index in
                (0..<4).reduce(UInt32(0)) { word, byte in
                    word | UInt32(message[chunkStart + index * 4 + byte]) << (8 * UInt32(byte))
                }
            }
            var (a, b, c, d) = state
            for round in 0..<64 {
                let mixed: UInt32
                let wordIndex: Int
                switch round {
                case 0..<16: mixed = (b & c) | (~b & d); wordIndex = round
                case 16..<32: mixed = (d & b) | (~d & c); wordIndex = (5 * round + 1) % 16
                case 32..<48: mixed = b ^ c ^ d; wordIndex = (3 * round + 5) % 16
                default: mixed = c ^ (b | ~d); wordIndex = (7 * round) % 16
                }
                let sum = a &+ mixed &+ sines[round] &+ words[wordIndex]
                (a, d, c) = (d, c, b)
                b = b &+ ((sum << shifts[round]) | (sum >> (32 - shifts[round])))
            }
            state = (state.0 &+ a, state.1 &+ b, state.2 &+ c, state.3 &+ d)
        }
        return [state.0, state.1, state.2, state.3].flatMap { word in
            (0..<4).map { UInt8(truncatingIfNeeded: word >> (8 * UInt32($0))) }
        }
    }

    private static let shifts: [UInt32] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
        5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
        4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
        6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ]

    /// floor(abs(sin(i + 1)) * 2^32)
    private static let sines: [UInt32] = (0..<64).map { index in
        UInt32(truncatingIfNeeded: Int64((abs(sin(Double(index + 1))) * 4_294_967_296).rounded(.down)))
    }
}
