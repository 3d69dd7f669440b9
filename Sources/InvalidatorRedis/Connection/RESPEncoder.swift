/// Writes commands in the Redis protocol (RESP arrays of bulk strings).
///
/// A pipeline is encoded into one buffer and written to the socket at once:
/// formatting argument by argument (as hiredis's argv API does) costs copies and
/// an allocation per argument, which adds up on a batch of thousands of keys.
enum RESPEncoder {
    static func encode<Argument: RedisArgument>(_ commands: [[Argument]]) -> [UInt8] {
        var buffer: [UInt8] = []
        // Keys are short: a guess that saves most regrowth.
        buffer.reserveCapacity(commands.reduce(0) { $0 + 16 + $1.count * 24 })
        for command in commands {
            appendHeader(UInt8(ascii: "*"), command.count, to: &buffer)
            for argument in command {
                argument.withBytes { bytes in
                    appendHeader(UInt8(ascii: "$"), bytes.count, to: &buffer)
                    buffer.append(contentsOf: bytes)
                }
                buffer.append(contentsOf: lineEnd)
            }
        }
        return buffer
    }

    private static let lineEnd: [UInt8] = [UInt8(ascii: "\r"), UInt8(ascii: "\n")]

    /// `*<count>` or `$<length>` and a line end. A count's text fits a small
    /// string, so `String(count)` allocates nothing.
    private static func appendHeader(_ marker: UInt8, _ count: Int, to buffer: inout [UInt8]) {
        buffer.append(marker)
        buffer.append(contentsOf: String(count).utf8)
        buffer.append(contentsOf: lineEnd)
    }
}
