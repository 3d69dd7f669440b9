/// Redis Cluster key-to-slot mapping, exactly as the server computes it.
package enum HashSlot {
    package static let count = 16384

    /// The slot of `key`: CRC16-XMODEM of its hash tag (see ``hashTag(of:)``)
    /// or of the whole key, modulo 16384.
    package static func slot(of key: some RedisArgument) -> Int {
        key.withBytes { bytes in
            let hashed = hashTagRange(in: bytes).map { bytes[$0] } ?? bytes[...]
            return Int(crc16(hashed)) & (count - 1)
        }
    }

    /// The hash tag Redis uses for `key`: the bytes between the first `{` and
    /// the first `}` after it, if that is not empty; otherwise nil and the whole
    /// key is hashed.
    package static func hashTag(of key: String) -> String? {
        key.withBytes { bytes in
            // Between two ASCII braces of valid UTF-8: valid UTF-8 itself.
            hashTagRange(in: bytes).map { String(decoding: bytes[$0], as: UTF8.self) }
        }
    }

    private static func hashTagRange(in bytes: UnsafeBufferPointer<UInt8>) -> Range<Int>? {
        guard let open = bytes.firstIndex(of: UInt8(ascii: "{")),
              let close = bytes[(open + 1)...].firstIndex(of: UInt8(ascii: "}")),
              close > open + 1
        else { return nil }
        return (open + 1)..<close
    }

    /// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, no reflection.
    package static func crc16<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc ^= UInt16(byte) << 8
            for _ in 0..<8 {
                crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1
            }
        }
        return crc
    }

    /// A hash tag (with braces) whose slot is `slot`, for naming a key that must
    /// live next to a key that has no usable hash tag of its own.
    static func tag(forSlot slot: Int) -> String {
        var candidate = 0
        while Self.slot(of: "{\(candidate)}") != slot {
            candidate += 1
        }
        return "{\(candidate)}"
    }
}
