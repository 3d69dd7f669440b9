import InvalidatorCore
import InvalidatorRedis
import Logging
import Synchronization

/// Dead letters as entries of a Redis stream: the whole record as JSON in
/// `record`, with `reason`, `rule` and `node` beside it for quick filtering
/// (`XRANGE`, `redis-cli`).
///
/// With a cap (`dead_letters.max_records`), a write is refused with
/// ``DeadLetterStoreFull`` while the stream holds that many records: the caller
/// waits as during an outage, so the worker stops consuming instead of filling
/// the node (records are never trimmed). A batch is written whole once the stream
/// is under the cap, so the stream can exceed it by one batch per worker.
package struct RedisStreamDeadLetterStore: DeadLetterStore {
    package let pool: RedisPool
    package let stream: String
    /// nil: no cap.
    package let maxRecords: Int?
    private let fill: Fill
    private let logger: Logger

    package init(pool: RedisPool, stream: String, maxRecords: Int? = nil, logger: Logger = Logger(label: "invalidator.dead-letters")) {
        self.pool = pool
        self.stream = stream
        self.maxRecords = maxRecords
        self.fill = Fill()
        self.logger = logger
    }

    package func write(_ records: [DeadLetter]) async throws {
        var commands = records.map { ["XADD", stream, "*"] + Self.fields(of: $0) }
        if let maxRecords {
            try await checkRoom(cap: maxRecords)
            // Counted in the same round trip, for the next write's check.
            commands.append(["XLEN", stream])
        }
        let replies = try await pool.pipeline(commands, routingKey: stream)
        if let failure = replies.lazy.compactMap({ $0.error }).first {
            throw failure
        }
        if maxRecords != nil, let count = replies.last?.integer {
            fill.recordCount(Int(count))
        }
        DeadLetterMetrics.recordWritten(records)
    }

    /// Refuses a write while the stream holds `cap` records or more. The count of
    /// this worker's last write is trusted while it is under the cap; at or over
    /// it (or before the first write) the stream is counted again, so room that
    /// `replay` makes is seen at the next attempt.
    private func checkRoom(cap: Int) async throws {
        if let known = fill.lastCount, known < cap { return }
        let reply = try await pool.pipeline([["XLEN", stream]], routingKey: stream)[0]
        if let error = reply.error { throw error }
        let count = Int(reply.integer ?? 0)
        switch fill.recordCount(count, cap: cap) {
        case .unchanged:
            break
        case .becameFull:
            logger.error("dead-letter stream is full; consuming stops until replay (or an operator) brings it under dead_letters.max_records", metadata: [
                "stream": "\(stream)", "records": "\(count)", "cap": "\(cap)",
            ])
        case .gotRoom:
            logger.info("dead-letter stream is under its cap again; consuming resumes", metadata: [
                "stream": "\(stream)", "records": "\(count)", "cap": "\(cap)",
            ])
        }
        if count >= cap {
            throw DeadLetterStoreFull(stream: stream, records: count, cap: cap)
        }
    }

    /// The entry fields of one record: `reason`, `rule`, `node` and the whole `record`.
    static func fields(of record: DeadLetter) -> [String] {
        ["reason", record.reason.rawValue,
         "rule", record.rule ?? "",
         "node", record.node ?? "",
         "record", record.json.serialized()]
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

/// What one store knows of its stream's length, shared by the copies of the store.
private final class Fill: Sendable {
    private struct State {
        var lastCount: Int?
        var isFull = false
    }

    private let state = Mutex(State())

    var lastCount: Int? { state.withLock { $0.lastCount } }

    func recordCount(_ count: Int) {
        state.withLock { $0.lastCount = count }
    }

    enum Change {
        case unchanged
        case becameFull
        case gotRoom
    }

    /// Records a count checked against `cap`, and whether that changed the stream
    /// from under the cap to full or back: an episode is logged once, however many
    /// writes wait through it.
    func recordCount(_ count: Int, cap: Int) -> Change {
        state.withLock { state in
            state.lastCount = count
            let wasFull = state.isFull
            state.isFull = count >= cap
            switch (wasFull, state.isFull) {
            case (false, true): return .becameFull
            case (true, false): return .gotRoom
            default: return .unchanged
            }
        }
    }
}
