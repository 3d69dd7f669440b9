import InvalidatorCore
import InvalidatorRedis
import Logging
import ServiceLifecycle
import Synchronization

/// Consumes change events from Redis Streams through a consumer group, at least once.
///
/// **Entries.** An entry carries one event: the value of its `event` field, or the
/// value of its only field when it has exactly one. An entry with several fields and
/// no `event` field is handed to the decoder as a JSON object of its fields (values as
/// strings), so a flat entry such as `XADD entity-changes * entity user id 42 op update`
/// reads as a native event, and one that does not decode is dead-lettered with all of
/// its fields (typically as `schema-violation`); nothing is dropped silently. An entry
/// deleted before it was processed (XDEL, trimming) carries nothing and is acknowledged.
///
/// **Acknowledgement.** An entry is acknowledged (XACK) only when it and every earlier
/// entry this worker read from its stream are finished: applied, or durably
/// dead-lettered, delayed redeletes included. Until then it stays pending, and a crash
/// redelivers it.
///
/// **Dead consumers.** Entries pending longer than `claim_idle` (their consumer died, or
/// lost them with its connection) are claimed with XAUTOCLAIM at startup and every
/// `claim_idle / 2`, and processed before the next new entries of that stream. Entries
/// this consumer itself read in an earlier run (a restarted pod keeps its name) are
/// processed again at startup and after every reconnection, without waiting for `claim_idle`.
///
/// **The group** is created at ID `0` rather than `$`, with MKSTREAM: events written
/// before the first worker ever started (publishers deployed first), or while the group
/// did not exist, are delivered instead of skipped. Invalidating twice is harmless;
/// skipping leaves a stale cache. A stream with a long history is therefore read from
/// its start the first time.
///
/// **Reading.** One dedicated connection per node blocks in XREADGROUP for new entries
/// (per hash slot in a cluster, where one XREADGROUP cannot span slots), up to
/// `block` (30 s by default) at a time, so an idle worker sends one command per
/// `block`; an entry that arrives ends the wait at once, and shutdown ends it with
/// CLIENT UNBLOCK. Pool connections, with the pool's retries, carry XGROUP CREATE,
/// XAUTOCLAIM, XACK and CLIENT UNBLOCK.
/// When a node is down, its reader logs it and retries with backoff; nothing is lost.
package final class RedisStreamSource: Service, Sendable {
    /// The field whose value is the event, when an entry has several fields.
    package static let eventField = "event"

    package let configuration: RedisStreamSourceConfiguration
    /// This worker's consumer name in the group (the worker id).
    package let consumer: String
    private let pool: RedisPool
    private let pipeline: EventPipeline
    private let drainTimeout: Duration
    private let acknowledgeInterval: Duration
    private let blockTime: Duration
    private let batchSize: Int
    private let logger: Logger
    private let liveness: LivenessMonitor
    private let claimed = Atomic<Int>(0)
    /// One driver per reader, once running.
    private let drivers = Mutex<[AtLeastOnceDriver<StreamReaderAdapter>]>([])

    /// - Parameter blockTime: how long one XREADGROUP waits for new entries: the
    ///   configuration's `block`, unless the liveness stall timeout needs less.
    package init(
        configuration: RedisStreamSourceConfiguration, pool: RedisPool, pipeline: EventPipeline, consumer: String,
        drainTimeout: Duration, acknowledgeInterval: Duration = .milliseconds(100),
        blockTime: Duration, batchSize: Int = 1000, liveness: LivenessMonitor = LivenessMonitor(),
        logger: Logger
    ) {
        self.liveness = liveness
        self.configuration = configuration
        self.pool = pool
        self.pipeline = pipeline
        self.consumer = consumer
        self.drainTimeout = drainTimeout
        self.acknowledgeInterval = acknowledgeInterval
        self.blockTime = blockTime
        self.batchSize = batchSize
        var logger = logger
        logger[metadataKey: "source"] = "redis_stream"
        logger[metadataKey: "group"] = "\(configuration.group)"
        self.logger = logger
    }

    /// True while every reader has its group and a working connection.
    package var isSubscribed: Bool {
        drivers.withLock { !$0.isEmpty && $0.allSatisfy(\.adapter.isReady) }
    }

    /// Entries processed since start (applied or dead-lettered).
    package var processedEvents: Int { drivers.withLock { $0.reduce(0) { $0 + $1.processedEvents } } }

    /// Entries claimed from other consumers since start.
    package var claimedEntries: Int { claimed.load(ordering: .relaxed) }

    /// Entries read and not yet finished.
    package var inFlight: Int { drivers.withLock { $0.reduce(0) { $0 + $1.inFlight } } }

    package func run() async throws {
        let readers = await readerStreams().map { streams in
            AtLeastOnceDriver(
                adapter: StreamReaderAdapter(
                    streams: streams, configuration: configuration, consumer: consumer, pool: pool, blockTime: blockTime,
                    batchSize: batchSize, onClaimed: { [self] count in self.claimed.add(count, ordering: .relaxed) }, logger: logger),
                pipeline: pipeline, liveness: liveness, drainTimeout: drainTimeout, commitInterval: acknowledgeInterval,
                logger: logger)
        }
        drivers.withLock { $0 = readers }
        logger.info("consuming", metadata: [
            "streams": "\(configuration.streams)", "consumer": "\(consumer)", "readers": "\(readers.count)",
        ])
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for reader in readers {
                tasks.addTask { try await reader.run() }
            }
            try await tasks.waitForAll()
        }
        logger.info("redis stream source stopped", metadata: ["unfinished": "\(inFlight)"])
    }

    /// The streams each reader serves: those on the same node (and, in a cluster,
    /// the same slot), in config order.
    private func readerStreams() async -> [[String]] {
        var groups: [[String]] = []
        var indexByOwner: [String: Int] = [:]
        for stream in configuration.streams {
            let owner: String
            if pool.configuration.mode == .cluster {
                owner = "slot \(HashSlot.slot(of: stream))"
            } else if let node = try? await pool.node(for: stream) {
                owner = node.description
            } else {
                owner = "stream \(stream)"
            }
            if let index = indexByOwner[owner] {
                groups[index].append(stream)
            } else {
                indexByOwner[owner] = groups.count
                groups.append([stream])
            }
        }
        return groups
    }

    // MARK: Entries

    struct StreamEntry: Sendable {
        var stream: String
        var id: String
        /// Field names and values in entry order; nil for an entry deleted while pending.
        var fields: [(name: [UInt8], value: [UInt8])]?

        /// The millisecond part of the entry id: when the entry was added.
        var timestampMilliseconds: Int64? {
            Int64(id.prefix { $0 != "-" })
        }
    }

    /// The event bytes of an entry; see the type's documentation.
    package static func payload(of fields: [(name: [UInt8], value: [UInt8])]?) -> [UInt8]? {
        guard let fields else { return nil }
        if let event = fields.last(where: { $0.name.elementsEqual(eventField.utf8) }) { return event.value }
        if fields.count == 1 { return fields[0].value }
        // Built from the bytes: a name or value that is not UTF-8 stays as it is, so
        // the event is rejected as invalid JSON instead of a repaired value becoming
        // another key.
        var object: [UInt8] = [UInt8(ascii: "{")]
        for (index, field) in fields.enumerated() {
            if index > 0 { object.append(UInt8(ascii: ",")) }
            appendQuoted(field.name, to: &object)
            object.append(UInt8(ascii: ":"))
            appendQuoted(field.value, to: &object)
        }
        object.append(UInt8(ascii: "}"))
        return object
    }

    /// A JSON string of `bytes`: quotes, backslashes and control bytes escaped, all else as is.
    private static func appendQuoted(_ bytes: [UInt8], to output: inout [UInt8]) {
        let hexDigits = Array("0123456789abcdef".utf8)
        output.append(UInt8(ascii: "\""))
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                output += [UInt8(ascii: "\\"), byte]
            case 0..<0x20:
                output += Array("\\u00".utf8) + [hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0xF)]]
            default:
                output.append(byte)
            }
        }
        output.append(UInt8(ascii: "\""))
    }

    /// Entries of an XREADGROUP reply: `[[stream, [[id, [field, value, ...]], ...]], ...]`, or nil on timeout.
    static func parseRead(_ reply: RedisReply) throws(RedisError) -> [StreamEntry] {
        if reply == .null { return [] }
        guard let streams = reply.array else {
            throw RedisError(code: .protocolViolation, message: "unexpected XREADGROUP reply")
        }
        var entries: [StreamEntry] = []
        for item in streams {
            guard let parts = item.array, parts.count == 2, let stream = parts[0].string else {
                throw RedisError(code: .protocolViolation, message: "unexpected XREADGROUP reply")
            }
            entries += try parseEntries(parts[1].array ?? [], stream: stream)
        }
        return entries
    }

    /// `[[id, [field, value, ...] or nil], ...]`, as XREADGROUP and XAUTOCLAIM return them.
    static func parseEntries(_ list: [RedisReply], stream: String) throws(RedisError) -> [StreamEntry] {
        var entries: [StreamEntry] = []
        entries.reserveCapacity(list.count)
        for item in list {
            // XAUTOCLAIM before Redis 7 lists entries deleted while pending as nil.
            if item == .null { continue }
            guard let parts = item.array, parts.count == 2, let id = parts[0].string else {
                throw RedisError(code: .protocolViolation, message: "unexpected stream entry in reply")
            }
            guard let flat = parts[1].array else {
                entries.append(StreamEntry(stream: stream, id: id, fields: nil))
                continue
            }
            var fields: [(name: [UInt8], value: [UInt8])] = []
            fields.reserveCapacity(flat.count / 2)
            for index in stride(from: 0, to: flat.count - 1, by: 2) {
                fields.append((flat[index].bytes ?? [], flat[index + 1].bytes ?? []))
            }
            entries.append(StreamEntry(stream: stream, id: id, fields: fields))
        }
        return entries
    }
}
