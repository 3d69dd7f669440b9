/// One reply from Redis, as decoded by hiredis.
///
/// A server error reply (for example `-NOPERM ...`) is a value, not a thrown
/// error: in a pipeline, one command failing says nothing about the others.
package enum RedisReply: Sendable, Hashable {
    /// A simple string such as `OK`.
    case status(String)
    /// An error reply, with its code prefix (`NOPERM ...`).
    case error(String)
    case integer(Int64)
    /// A bulk string; bytes because values need not be UTF-8.
    case bulk([UInt8])
    /// A nil bulk string or nil array (a missing key for GET).
    case null
    case array([RedisReply])

    /// The server error carried by this reply, if it is one.
    package var error: RedisError? {
        if case .error(let message) = self { RedisError(serverMessage: message) } else { nil }
    }

    /// Status and bulk replies as text.
    package var string: String? {
        switch self {
        case .status(let text): text
        case .bulk(let bytes): String(decoding: bytes, as: UTF8.self)
        default: nil
        }
    }

    /// Bulk and status replies as bytes, exactly as the server sent them.
    package var bytes: [UInt8]? {
        switch self {
        case .bulk(let bytes): bytes
        case .status(let text): Array(text.utf8)
        default: nil
        }
    }

    package var integer: Int64? {
        if case .integer(let value) = self { value } else { nil }
    }

    package var array: [RedisReply]? {
        if case .array(let elements) = self { elements } else { nil }
    }
}
