/// A strict JSON parser over raw bytes (RFC 8259), built for small change events.
///
/// It is several times faster than a `Codable` decoder because it never builds
/// intermediate dictionaries or goes through `Decoder` containers: strings without
/// escapes are created straight from the input bytes.
public struct JSONParser {
    /// Nesting deeper than this is refused so hostile input cannot exhaust the stack.
    public static let maximumDepth = 64

    public struct SyntaxError: Error, Hashable, Sendable, CustomStringConvertible {
        /// Byte offset of the problem in the input.
        public var offset: Int
        public var message: String
        public var description: String { "\(message) at byte \(offset)" }
    }

    public static func parse(_ bytes: some Sequence<UInt8>) throws(SyntaxError) -> JSONValue {
        let array = Array(bytes)
        return try parse(bytes: array)
    }

    public static func parse(bytes: [UInt8]) throws(SyntaxError) -> JSONValue {
        try bytes.withUnsafeBufferPointer { (buffer) throws(SyntaxError) in
            var parser = Cursor(buffer: buffer)
            return try parser.parseDocument()
        }
    }
}

private struct Cursor {
    let buffer: UnsafeBufferPointer<UInt8>
    var position = 0

    init(buffer: UnsafeBufferPointer<UInt8>) {
        self.buffer = buffer
    }

    mutating func parseDocument() throws(JSONParser.SyntaxError) -> JSONValue {
        skipWhitespace()
        let value = try parseValue(depth: 0)
        skipWhitespace()
        guard position == buffer.count else { throw error("unexpected data after the JSON value") }
        return value
    }

    func error(_ message: String) -> JSONParser.SyntaxError {
        JSONParser.SyntaxError(offset: position, message: message)
    }

    mutating func skipWhitespace() {
        while position < buffer.count {
            switch buffer[position] {
            case 0x20, 0x0A, 0x0D, 0x09: position += 1
            default: return
            }
        }
    }

    mutating func parseValue(depth: Int) throws(JSONParser.SyntaxError) -> JSONValue {
        guard position < buffer.count else { throw error("unexpected end of input") }
        switch buffer[position] {
        case UInt8(ascii: "{"): return .object(try parseObject(depth: depth + 1))
        case UInt8(ascii: "["): return .array(try parseArray(depth: depth + 1))
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        default: throw error("unexpected character")
        }
    }

    mutating func expectLiteral(_ literal: StaticString) throws(JSONParser.SyntaxError) {
        let count = literal.utf8CodeUnitCount
        guard position + count <= buffer.count else { throw error("unexpected end of input") }
        let literalBytes = UnsafeBufferPointer(start: literal.utf8Start, count: count)
        for index in 0..<count where buffer[position + index] != literalBytes[index] {
            throw error("invalid literal")
        }
        position += count
    }

    mutating func parseObject(depth: Int) throws(JSONParser.SyntaxError) -> JSONObject {
        guard depth <= JSONParser.maximumDepth else { throw error("nesting too deep") }
        position += 1
        var fields: [JSONObject.Field] = []
        // A change event has about a dozen top-level fields; nested objects are small.
        fields.reserveCapacity(depth == 1 ? 16 : 4)
        skipWhitespace()
        if position < buffer.count, buffer[position] == UInt8(ascii: "}") {
            position += 1
            return JSONObject(fields)
        }
        while true {
            skipWhitespace()
            guard position < buffer.count, buffer[position] == UInt8(ascii: "\"") else {
                throw error("expected a string key")
            }
            let key = try parseString()
            skipWhitespace()
            guard position < buffer.count, buffer[position] == UInt8(ascii: ":") else { throw error("expected ':'") }
            position += 1
            skipWhitespace()
            fields.append(JSONObject.Field(key: key, value: try parseValue(depth: depth)))
            skipWhitespace()
            guard position < buffer.count else { throw error("unexpected end of input") }
            switch buffer[position] {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "}"): position += 1; return JSONObject(fields)
            default: throw error("expected ',' or '}'")
            }
        }
    }

    mutating func parseArray(depth: Int) throws(JSONParser.SyntaxError) -> [JSONValue] {
        guard depth <= JSONParser.maximumDepth else { throw error("nesting too deep") }
        position += 1
        var elements: [JSONValue] = []
        skipWhitespace()
        if position < buffer.count, buffer[position] == UInt8(ascii: "]") {
            position += 1
            return elements
        }
        while true {
            skipWhitespace()
            elements.append(try parseValue(depth: depth))
            skipWhitespace()
            guard position < buffer.count else { throw error("unexpected end of input") }
            switch buffer[position] {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "]"): position += 1; return elements
            default: throw error("expected ',' or ']'")
            }
        }
    }

    mutating func parseString() throws(JSONParser.SyntaxError) -> String {
        position += 1
        let start = position
        while position < buffer.count {
            let byte = buffer[position]
            if byte == UInt8(ascii: "\"") {
                let string = try validUTF8(UnsafeBufferPointer(rebasing: buffer[start..<position]), from: start)
                position += 1
                return string
            }
            if byte == UInt8(ascii: "\\") {
                return try parseEscapedString(from: start)
            }
            guard byte >= 0x20 else { throw error("control character in string") }
            position += 1
        }
        throw error("unterminated string")
    }

    /// A string's bytes as text, refusing invalid UTF-8: repairing it (as
    /// `String(decoding:)` does) would turn an id into another key, and the real
    /// key would stay cached.
    ///
    /// Not `String(validating:as:)`: it is generic over the encoding and looked up type
    /// metadata on every call, about a tenth of the worker's CPU in a backlog drain.
    /// Decoding repairs each invalid sequence to U+FFFD, so the text's bytes equal the
    /// input's exactly when the input was valid.
    func validUTF8(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int) throws(JSONParser.SyntaxError) -> String {
        let text = String(decoding: bytes, as: UTF8.self)
        guard bytes.allSatisfy({ $0 < 0x80 }) || text.utf8.elementsEqual(bytes) else {
            throw JSONParser.SyntaxError(offset: start, message: "invalid UTF-8 in string")
        }
        return text
    }

    /// The slow path, taken only by strings that contain escapes.
    mutating func parseEscapedString(from start: Int) throws(JSONParser.SyntaxError) -> String {
        var bytes = Array(buffer[start..<position])
        while position < buffer.count {
            let byte = buffer[position]
            position += 1
            switch byte {
            case UInt8(ascii: "\""):
                return try bytes.withUnsafeBufferPointer { (text) throws(JSONParser.SyntaxError) in try validUTF8(text, from: start) }
            case UInt8(ascii: "\\"):
                guard position < buffer.count else { throw error("unterminated escape") }
                let escaped = buffer[position]
                position += 1
                switch escaped {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): bytes.append(escaped)
                case UInt8(ascii: "b"): bytes.append(0x08)
                case UInt8(ascii: "f"): bytes.append(0x0C)
                case UInt8(ascii: "n"): bytes.append(0x0A)
                case UInt8(ascii: "r"): bytes.append(0x0D)
                case UInt8(ascii: "t"): bytes.append(0x09)
                case UInt8(ascii: "u"): appendUTF8(of: try parseUnicodeEscape(), to: &bytes)
                default: throw error("invalid escape")
                }
            case 0..<0x20:
                throw error("control character in string")
            default:
                bytes.append(byte)
            }
        }
        throw error("unterminated string")
    }

    mutating func parseHexQuad() throws(JSONParser.SyntaxError) -> UInt32 {
        guard position + 4 <= buffer.count else { throw error("truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = buffer[position]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw error("invalid \\u escape")
            }
            value = value << 4 | UInt32(digit)
            position += 1
        }
        return value
    }

    mutating func parseUnicodeEscape() throws(JSONParser.SyntaxError) -> Unicode.Scalar {
        let high = try parseHexQuad()
        if (0xD800..<0xDC00).contains(high) {
            guard position + 2 <= buffer.count,
                  buffer[position] == UInt8(ascii: "\\"), buffer[position + 1] == UInt8(ascii: "u")
            else { throw error("unpaired surrogate") }
            position += 2
            let low = try parseHexQuad()
            guard (0xDC00..<0xE000).contains(low) else { throw error("unpaired surrogate") }
            return Unicode.Scalar(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))!
        }
        guard let scalar = Unicode.Scalar(high) else { throw error("unpaired surrogate") }
        return scalar
    }

    func appendUTF8(of scalar: Unicode.Scalar, to bytes: inout [UInt8]) {
        bytes.append(contentsOf: UTF8.encode(scalar)!)
    }

    mutating func parseNumber() throws(JSONParser.SyntaxError) -> String {
        let start = position
        if buffer[position] == UInt8(ascii: "-") { position += 1 }
        guard position < buffer.count else { throw error("invalid number") }
        if buffer[position] == UInt8(ascii: "0") {
            position += 1
        } else {
            guard skipDigits() > 0 else { throw error("invalid number") }
        }
        if position < buffer.count, buffer[position] == UInt8(ascii: ".") {
            position += 1
            guard skipDigits() > 0 else { throw error("invalid number") }
        }
        if position < buffer.count, buffer[position] | 0x20 == UInt8(ascii: "e") {
            position += 1
            if position < buffer.count, buffer[position] == UInt8(ascii: "+") || buffer[position] == UInt8(ascii: "-") {
                position += 1
            }
            guard skipDigits() > 0 else { throw error("invalid number") }
        }
        return String(decoding: UnsafeBufferPointer(rebasing: buffer[start..<position]), as: UTF8.self)
    }

    mutating func skipDigits() -> Int {
        let start = position
        while position < buffer.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(buffer[position]) {
            position += 1
        }
        return position - start
    }
}
