import InvalidatorCore
import InvalidatorRedis

/// Dead letters as entries of a Redis stream: the whole record as JSON in
/// `record`, with `reason`, `rule` and `node` beside it for quick filtering
/// (`XRANGE`, `redis-cli`).
package struct RedisStreamDeadLetterStore: DeadLetterStore {
    package let pool: RedisPool
    package let stream: String

    package init(pool: RedisPool, stream: String) {
        self.pool = pool
        self.stream = stream
    }

    package func write(_ records: [DeadLetter]) async throws {
        let commands = records.map { ["XADD", stream, "*"] + Self.fields(of: $0) }
        let replies = try await pool.pipeline(commands, routingKey: stream)
        if let failure = replies.lazy.compactMap({ $0.error }).first {
            throw failure
        }
        DeadLetterMetrics.recordWritten(records)
    }

    /// The entry fields of one record: `reason`, `rule`, `node` and the whole `record`.
    static func fields(of record: DeadLetter) -> [String] {
        ["reason", record.reason.rawValue,
         "rule", record.rule ?? "",
         "node", record.node ?? "",
         "record", record.json.serialized()]
    }
}
