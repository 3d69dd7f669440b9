import CHiredis

/// Turns the bytes a node sends into replies, with hiredis's reader.
///
/// Keeps a reply that arrived in part until the rest comes. Used on its
/// connection's thread only.
final class ReplyParser {
    private let reader: UnsafeMutablePointer<redisReader>

    init() throws(RedisError) {
        // hiredis only returns nil when out of memory.
        guard let reader = redisReaderCreate() else {
            throw RedisError(code: .connection, message: "cannot allocate a reply reader")
        }
        self.reader = reader
    }

    deinit {
        redisReaderFree(reader)
    }

    func feed(_ bytes: UnsafeRawBufferPointer) throws(RedisError) {
        let status = bytes.withMemoryRebound(to: CChar.self) { redisReaderFeed(reader, $0.baseAddress, $0.count) }
        if status != REDIS_OK { throw failure() }
    }

    /// The next complete reply, or nil until more bytes are fed.
    func next() throws(RedisError) -> RedisReply? {
        var raw: UnsafeMutableRawPointer?
        guard redisReaderGetReply(reader, &raw) == REDIS_OK else { throw failure() }
        guard let raw else { return nil }
        defer { freeReplyObject(raw) }
        return RedisReply(raw.assumingMemoryBound(to: redisReply.self))
    }

    private func failure() -> RedisError {
        let description = withUnsafeBytes(of: reader.pointee.errstr) { bytes in
            String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        }
        return RedisError(code: .protocolViolation, message: description)
    }
}

extension RedisReply {
    /// Copies a hiredis reply tree into Swift values.
    fileprivate init(_ reply: UnsafeMutablePointer<redisReply>) {
        let value = reply.pointee
        func bytes() -> [UInt8] {
            guard let text = value.str else { return [] }
            return Array(UnsafeRawBufferPointer(start: text, count: value.len))
        }
        switch value.type {
        case REDIS_REPLY_STATUS: self = .status(String(decoding: bytes(), as: UTF8.self))
        case REDIS_REPLY_ERROR: self = .error(String(decoding: bytes(), as: UTF8.self))
        case REDIS_REPLY_INTEGER: self = .integer(Int64(value.integer))
        case REDIS_REPLY_STRING: self = .bulk(bytes())
        case REDIS_REPLY_ARRAY:
            self = .array((0..<value.elements).map { index in value.element[index].map(RedisReply.init) ?? .null })
        default: self = .null
        }
    }
}
