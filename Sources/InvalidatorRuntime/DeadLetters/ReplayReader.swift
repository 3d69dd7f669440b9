import InvalidatorCore
import InvalidatorRedis

/// One dead-letter record as a replay reads it from its store.
package struct StoredDeadLetter: Sendable {
    /// The stream entry id (`<milliseconds>-<sequence>`), or `topic/partition@offset` on Kafka.
    package var id: String
    /// The decoded record; nil when the entry cannot be read (see `decodingError`).
    package var record: DeadLetter?
    package var decodingError: String?
    /// The quick-filter fields written beside the record (stream fields or Kafka
    /// headers): `reason`, `rule`, `node`.
    package var fields: [String: String]

    /// Milliseconds since the epoch at which the record was written, for `--since`.
    package var writtenAtMilliseconds: Int64?
}

/// Reads and updates dead letters in a Redis stream, for `replay`.
///
/// Every change keeps a record durable: a record is removed (`XDEL`) only once
/// its work succeeded, and a record that failed again is replaced by its updated
/// version in one Lua script, so it never disappears in between. Concurrent
/// replays coordinate with a lock per entry (`SET <stream>:replay-lock:<id> NX PX`).
package struct DeadLetterReader: Sendable {
    package let pool: RedisPool
    package let stream: String

    package init(pool: RedisPool, stream: String) {
        self.pool = pool
        self.stream = stream
    }

    package init(store: RedisStreamDeadLetterStore) {
        self.init(pool: store.pool, stream: store.stream)
    }

    /// The id of the newest entry, or nil when the stream is empty or missing.
    package func lastID() async throws(RedisError) -> String? {
        let reply = try await command(["XREVRANGE", stream, "+", "-", "COUNT", "1"])
        return Self.entries(reply).first?.id
    }

    /// Entries from `start` (an id, `(id` for exclusive, or `-`) through `end`, oldest first.
    package func read(from start: String, through end: String = "+", count: Int) async throws(RedisError) -> [StoredDeadLetter] {
        Self.entries(try await command(["XRANGE", stream, start, end, "COUNT", String(count)]))
    }

    /// The entry with `id`, or nil when it is gone.
    package func entry(_ id: String) async throws(RedisError) -> StoredDeadLetter? {
        Self.entries(try await command(["XRANGE", stream, id, id])).first
    }

    /// Every entry, oldest first.
    package func all(batchSize: Int = 500) async throws(RedisError) -> [StoredDeadLetter] {
        var result: [StoredDeadLetter] = []
        var start = "-"
        while true {
            let batch = try await read(from: start, count: batchSize)
            result += batch
            guard batch.count == batchSize, let last = batch.last else { return result }
            start = "(" + last.id
        }
    }

    /// How many records the stream holds.
    package func count() async throws(RedisError) -> Int {
        Int(try await command(["XLEN", stream]).integer ?? 0)
    }

    /// Bytes the stream takes on its node (`MEMORY USAGE`, which samples a large
    /// stream); 0 when the stream does not exist.
    package func memoryUsage() async throws(RedisError) -> Int {
        Int(try await command(["MEMORY", "USAGE", stream]).integer ?? 0)
    }

    package func lockKey(for id: String) -> String {
        "\(stream):replay-lock:\(id)"
    }

    /// Takes the replay lock of entry `id` for `owner`; false when another replay holds it.
    package func claim(_ id: String, owner: String, ttl: Duration) async throws(RedisError) -> Bool {
        try await ReplayLock(pool: pool, key: lockKey(for: id)).acquire(owner: owner, ttl: ttl)
    }

    /// Releases the lock of entry `id` if `owner` still holds it.
    package func release(_ id: String, owner: String) async throws(RedisError) {
        try await ReplayLock(pool: pool, key: lockKey(for: id)).release(owner: owner)
    }

    /// Removes entry `id`; false when it was already gone.
    @discardableResult
    package func remove(_ id: String) async throws(RedisError) -> Bool {
        try await command(["XDEL", stream, id]).integer == 1
    }

    /// Atomically replaces entry `id` by `records` (new entries at the end of the
    /// stream). Nothing is added when `id` was already gone, so a retried call
    /// never duplicates records. Returns whether the replacement happened.
    @discardableResult
    package func replace(_ id: String, with records: [DeadLetter]) async throws(RedisError) -> Bool {
        let arguments = ["EVAL", Self.replaceScript, "1", stream, id] + RedisStreamDeadLetterStore.scriptArguments(records)
        return try await command(arguments).integer == 1
    }

    // MARK: Redis

    private func command(_ arguments: [String]) async throws(RedisError) -> RedisReply {
        try await pipeline([arguments], routingKey: stream)
    }

    private func pipeline(_ commands: [[String]], routingKey: String) async throws(RedisError) -> RedisReply {
        let reply = try await pool.pipeline(commands, routingKey: routingKey)[0]
        if let error = reply.error { throw error }
        return reply
    }

    /// ARGV: the old id, then per new record its field count and fields.
    static let replaceScript = """
        if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
        \(RedisStreamDeadLetterStore.appendRecordsLua)
        return 1
        """

    static func entries(_ reply: RedisReply) -> [StoredDeadLetter] {
        (reply.array ?? []).compactMap { entry -> StoredDeadLetter? in
            guard let parts = entry.array, parts.count == 2, let id = parts[0].string else { return nil }
            let values = parts[1].array ?? []
            var fields: [String: String] = [:]
            for index in stride(from: 0, to: values.count - 1, by: 2) {
                if let key = values[index].string, let value = values[index + 1].string { fields[key] = value }
            }
            var stored = StoredDeadLetter(id: id, record: nil, decodingError: nil, fields: fields)
            // A stream entry id starts with the milliseconds at which it was added.
            stored.writtenAtMilliseconds = id.split(separator: "-").first.flatMap { Int64($0) }
            guard let text = fields["record"] else {
                stored.decodingError = "the entry has no record field"
                return stored
            }
            do {
                stored.record = try DeadLetter(jsonText: text)
            } catch {
                stored.decodingError = "\(error)"
            }
            return stored
        }
    }
}
