/// An argument of a Redis command: text, or raw bytes.
///
/// Keys read back from Redis (`SCAN`, `SSCAN`) are bytes and need not be UTF-8;
/// they are deleted under exactly those bytes. Turning them into `String` would
/// repair invalid UTF-8 into another key, which Redis answers with 0 deletions.
package protocol RedisArgument: Hashable, Sendable {
    /// A command name or other fixed text as an argument of this type.
    init(text: String)
    /// Calls `body` with the argument's bytes as they go on the wire.
    func withBytes<Result>(_ body: (UnsafeBufferPointer<UInt8>) throws -> Result) rethrows -> Result
}

extension String: RedisArgument {
    package init(text: String) { self = text }

    package func withBytes<Result>(_ body: (UnsafeBufferPointer<UInt8>) throws -> Result) rethrows -> Result {
        var text = self
        return try text.withUTF8(body)
    }
}

extension Array: RedisArgument where Element == UInt8 {
    package init(text: String) { self = Array(text.utf8) }

    package func withBytes<Result>(_ body: (UnsafeBufferPointer<UInt8>) throws -> Result) rethrows -> Result {
        try withUnsafeBufferPointer(body)
    }
}
