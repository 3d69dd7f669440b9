/// Writes commands in the Redis protocol (RESP arrays of bulk strings).
///
/// A pipeline is encoded into one buffer and handed to hiredis in one call:
/// hiredis's own argv formatting costs two copies and an allocation per
/// argument, which adds up on a batch of thousands of keys.
enum RESPEncoder {
    static func encode(_ commands: [[String]]) -> [UInt8] {
        var buffer: [UInt8] = []
        // Keys are short: a guess that saves most regrowth.
        buffer.reserveCapacity(commands.reduce(0) { $0 + 16 + $1.count * 24 })
        for command in commands {
            buffer.append(UInt8(ascii: "*"))
            appendDecimal(command.count, to: &buffer)
            for argument in command {
                buffer.append(UInt8(ascii: "$"))
                appendDecimal(argument.utf8.count, to: &buffer)
                buffer.append(contentsOf: argument.utf8)
                buffer.append(contentsOf: [UInt8(ascii: "\r"), UInt8(ascii: "\n")])
            }
        }
        return buffer
    }

    /// `value` in decimal followed by CRLF.
    private static func appendDecimal(_ value: Int, to buffer: inout [UInt8]) {
        var digits = 1
        var rest = value / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        let end = buffer.count + digits
        buffer.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: digits))
        var remaining = value
        for index in stride(from: end - 1, through: end - digits, by: -1) {
            buffer[index] = UInt8(ascii: "0") + UInt8(remaining % 10)
            remaining /= 10
        }
        buffer.append(contentsOf: [UInt8(ascii: "\r"), UInt8(ascii: "\n")])
    }
}
