import InvalidatorCore
import InvalidatorRedis
import Logging
import Metrics
import Synchronization

/// Dead letters as entries of a Redis stream: the whole record as JSON in
/// `record`, with `reason`, `rule` and `node` beside it for quick filtering
/// (`XRANGE`, `redis-cli`).
///
/// A batch is appended by one Lua script, so it is stored whole or not at all: a
/// node at `maxmemory` (with `noeviction`) refuses a script before its first write,
/// so a retried batch never leaves duplicates behind.
///
/// With a cap (`dead_letters.max_records`), the script refuses the batch while the
/// stream holds that many records: ``DeadLetterStoreFull``, which the caller waits
/// out like an outage, so the worker stops consuming instead of filling the node
/// (records are never trimmed). Under the cap a batch is written whole, so the
/// stream can exceed the cap by the last batch written.
package struct RedisStreamDeadLetterStore: DeadLetterStore {
    package let pool: RedisPool
    package let stream: String
    /// nil: no cap.
    package let maxRecords: Int?
    private let episode = FullEpisode()
    private let logger: Logger
    private let metricsFactory: any MetricsFactory

    package init(
        pool: RedisPool, stream: String, maxRecords: Int? = nil, logger: Logger = Logger(label: "invalidator.dead-letters"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) {
        self.pool = pool
        self.stream = stream
        self.maxRecords = maxRecords
        self.logger = logger
        self.metricsFactory = metricsFactory
    }

    package func write(_ records: [DeadLetter]) async throws {
        let arguments = ["EVAL", Self.appendScript, "1", stream, String(maxRecords ?? 0)] + Self.scriptArguments(records)
        let reply = try await pool.pipeline([arguments], routingKey: stream)[0]
        if let error = reply.error { throw error }
        guard let length = reply.integer else {
            throw RedisError(code: .protocolViolation, message: "the dead-letter append script did not answer with an integer")
        }
        if let maxRecords {
            let refusedAt = length >= 0 ? Int(length) : nil
            note(refusedAt, cap: maxRecords)
            if let refusedAt { throw DeadLetterStoreFull(stream: stream, records: refusedAt, cap: maxRecords) }
        }
        DeadLetterMetrics.recordWritten(records, factory: metricsFactory)
    }

    /// Logs the start and the end of a full episode, once each, however many writes wait through it.
    private func note(_ refusedAt: Int?, cap: Int) {
        let metadata: Logger.Metadata = ["stream": "\(stream)", "cap": "\(cap)"]
        switch (episode.update(isFull: refusedAt != nil), refusedAt) {
        case (true, let count?):
            logger.error(
                "dead-letter stream is full; consuming stops until replay (or an operator) brings it under dead_letters.max_records",
                metadata: metadata.merging(["records": "\(count)"]) { $1 })
        case (true, nil):
            logger.info("dead-letter stream is under its cap again; consuming resumes", metadata: metadata)
        case (false, _):
            break
        }
    }

    /// KEYS[1]: the stream. ARGV[1]: the cap (0: none); then, per record, its field
    /// count and fields. Returns the stream's length when it refused the records
    /// (at the cap), else -1 once every record is appended.
    static let appendScript = """
        local cap = tonumber(ARGV[1])
        if cap > 0 then
          local count = redis.call('XLEN', KEYS[1])
          if count >= cap then return count end
        end
        \(appendRecordsLua)
        return -1
        """

    /// Lua appending the records of ARGV from ARGV[2] on (per record: its field count,
    /// then its fields) to the stream KEYS[1]; shared with replay's replace script.
    static let appendRecordsLua = """
        local i = 2
        while i <= #ARGV do
          local n = tonumber(ARGV[i])
          redis.call('XADD', KEYS[1], '*', unpack(ARGV, i + 1, i + n))
          i = i + n + 1
        end
        """

    /// Per record, its field count and fields, as the scripts that append records read them.
    static func scriptArguments(_ records: [DeadLetter]) -> [String] {
        var arguments: [String] = []
        for record in records {
            let fields = fields(of: record)
            arguments.append(String(fields.count))
            arguments += fields
        }
        return arguments
    }

    /// The entry fields of one record: `reason`, `rule`, `node`, `target` (webhook records only)
    /// and the whole `record`.
    static func fields(of record: DeadLetter) -> [String] {
        ["reason", record.reason.rawValue,
         "rule", record.rule ?? "",
         "node", record.node ?? ""]
            + (record.target.map { ["target", $0] } ?? [])
            + ["record", record.json.serialized()]
    }
}

/// A capped dead-letter stream holds `dead_letters.max_records` records or more:
/// the write is refused, to be tried again once `replay` (or an operator) made room.
package struct DeadLetterStoreFull: Error, CustomStringConvertible, Sendable {
    package var stream: String
    package var records: Int
    package var cap: Int

    package var description: String {
        "the dead-letter stream \(stream) holds \(records) records, at its cap of \(cap) (dead_letters.max_records)"
    }
}

/// Whether a capped stream was full at the last write, shared by the copies of the store.
private final class FullEpisode: Sendable {
    private let isFull = Mutex(false)

    /// Records the latest state; true when it changed.
    func update(isFull full: Bool) -> Bool {
        isFull.withLock { isFull in
            defer { isFull = full }
            return isFull != full
        }
    }
}
