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
/// (per hash slot in a cluster, where one XREADGROUP cannot span slots); pool
/// connections, with the pool's retries, carry XGROUP CREATE, XAUTOCLAIM and XACK.
/// When a node is down, its reader logs it and retries with backoff; nothing is lost.
public final class RedisStreamSource: Service, Sendable {
    /// The field whose value is the event, when an entry has several fields.
    public static let eventField = "event"

    public let configuration: RedisStreamSourceConfiguration
    /// This worker's consumer name in the group (the worker id).
    public let consumer: String
    private let pool: RedisPool
    private let pipeline: EventPipeline
    private let drainTimeout: Duration
    private let acknowledgeInterval: Duration
    private let blockTime: Duration
    private let batchSize: Int
    private let logger: Logger
    private let progress = Mutex(StreamProgress())
    private let readersReady = Mutex<[Bool]>([])
    private let processed = Atomic<Int>(0)
    private let claimed = Atomic<Int>(0)
    private let acknowledgeFailures = Atomic<Int>(0)
    private let stop = StopSignal()
    private let liveness: LivenessMonitor

    public init(
        configuration: RedisStreamSourceConfiguration, pool: RedisPool, pipeline: EventPipeline, consumer: String,
        drainTimeout: Duration, acknowledgeInterval: Duration = .milliseconds(100),
        blockTime: Duration = .milliseconds(100), batchSize: Int = 1000, liveness: LivenessMonitor = LivenessMonitor(),
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
    public var isSubscribed: Bool {
        readersReady.withLock { !$0.isEmpty && !$0.contains(false) }
    }

    /// Entries processed since start (applied or dead-lettered).
    public var processedEvents: Int { processed.load(ordering: .relaxed) }

    /// Entries claimed from other consumers since start.
    public var claimedEntries: Int { claimed.load(ordering: .relaxed) }

    /// Entries read and not yet finished.
    public var inFlight: Int { progress.withLock { $0.tracker.inFlight } }

    public func run() async throws {
        let readers = await readerStreams()
        readersReady.withLock { $0 = Array(repeating: false, count: readers.count) }
        logger.info("consuming", metadata: [
            "streams": "\(configuration.streams)", "consumer": "\(consumer)", "readers": "\(readers.count)",
        ])
        await withTaskCancellationOrGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { tasks in
                for (index, streams) in readers.enumerated() {
                    tasks.addTask {
                        await self.liveness.monitor("redis_stream \(streams.joined(separator: ","))") {
                            await self.read(streams, reader: index, heartbeat: $0)
                        }
                    }
                }
                // Acknowledges on a timer, so work finished between reads (delayed
                // redeletes, a dead-letter store coming back) is acknowledged even
                // when no new entries arrive.
                tasks.addTask {
                    while !self.stop.isSet {
                        await self.stop.pause(for: self.acknowledgeInterval)
                        await self.acknowledge()
                    }
                }
                await tasks.waitForAll()
            }
        } onCancelOrGracefulShutdown: {
            self.stop.set()
        }
        await shutDown()
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

    // MARK: Reading

    /// Reads `streams` until shutdown, reconnecting with backoff when the node is
    /// unreachable. Every wait is bounded (BLOCK, backoff), so the loop beats
    /// `heartbeat` each round, idle or not.
    private func read(_ streams: [String], reader: Int, heartbeat: Heartbeat) async {
        let readNew = ["XREADGROUP", "GROUP", configuration.group, consumer, "COUNT", String(batchSize),
                       "BLOCK", String(blockTime.milliseconds), "STREAMS"] + streams + streams.map { _ in ">" }
        let claimInterval = max(configuration.claimIdle / 2, .milliseconds(100))
        var connection: RedisConnection?
        var ready = false
        var nextClaim = ContinuousClock.now
        var backoff = ReconnectBackoff()
        while !stop.isSet {
            heartbeat.beat(.reading)
            do throws(RedisError) {
                if !ready {
                    try await createGroups(streams)
                    let opened = try await pool.dedicatedConnection(
                        routingKey: streams[0], commandTimeout: pool.configuration.commandTimeout + blockTime)
                    connection = opened
                    guard try await processOwnPending(streams, on: opened, heartbeat: heartbeat) else { break }
                    ready = true
                    readersReady.withLock { $0[reader] = true }
                    if backoff.failures > 0 {
                        logger.info("reading streams again", metadata: [
                            "streams": "\(streams)", "node": "\(opened.endpoint)", "attempts": "\(backoff.failures)",
                        ])
                    }
                    backoff.reset()
                }
                if ContinuousClock.now >= nextClaim {
                    guard try await claimAbandoned(streams, heartbeat: heartbeat) else { break }
                    nextClaim = ContinuousClock.now + claimInterval
                }
                guard let connection else { continue }
                let reply = try await connection.send(readNew)
                if let error = reply.error { throw error }
                let entries = try Self.parseRead(reply)
                if !entries.isEmpty {
                    guard await process(entries, heartbeat: heartbeat) != nil else { break }
                }
            } catch {
                readersReady.withLock { $0[reader] = false }
                await connection?.close()
                connection = nil
                ready = false
                let delay = backoff.next()
                if backoff.failures == 1 || backoff.failures % 20 == 0 {
                    let missingGroup = error.message.hasPrefix("NOGROUP")
                    logger.warning(
                        missingGroup
                            ? "consumer group is missing (stream deleted, or node restarted empty); recreating it"
                            : "cannot read streams; retrying with backoff",
                        metadata: ["streams": "\(streams)", "error": "\(error)", "attempt": "\(backoff.failures)"])
                }
                await stop.pause(for: delay)
            }
        }
        readersReady.withLock { $0[reader] = false }
        await connection?.close()
    }

    /// XGROUP CREATE at `0` with MKSTREAM; an existing group (BUSYGROUP) is kept as it is.
    private func createGroups(_ streams: [String]) async throws(RedisError) {
        for stream in streams {
            let reply = try await pool.pipeline(
                [["XGROUP", "CREATE", stream, configuration.group, "0", "MKSTREAM"]], routingKey: stream)[0]
            if let error = reply.error, !error.message.hasPrefix("BUSYGROUP") { throw error }
        }
    }

    /// Processes entries this consumer read earlier and never acknowledged (a previous
    /// run under the same name, or replies lost with a connection); those still in
    /// flight here are skipped. False when a batch could not be made durable.
    private func processOwnPending(
        _ streams: [String], on connection: RedisConnection, heartbeat: Heartbeat
    ) async throws(RedisError) -> Bool {
        for stream in streams {
            var after = "0-0"
            while !stop.isSet {
                heartbeat.beat(.reading)
                let reply = try await connection.send(
                    ["XREADGROUP", "GROUP", configuration.group, consumer, "COUNT", String(batchSize), "STREAMS", stream, after])
                if let error = reply.error { throw error }
                let entries = try Self.parseRead(reply)
                guard let last = entries.last else { break }
                guard let count = await process(entries, heartbeat: heartbeat) else { return false }
                if count > 0 {
                    logger.info("processing entries this consumer read before and did not acknowledge", metadata: [
                        "stream": "\(stream)", "entries": "\(count)",
                    ])
                }
                after = last.id
            }
        }
        return true
    }

    /// Claims and processes entries idle longer than `claim_idle`. False when a batch
    /// could not be made durable.
    private func claimAbandoned(_ streams: [String], heartbeat: Heartbeat) async throws(RedisError) -> Bool {
        let minimumIdle = String(configuration.claimIdle.milliseconds)
        for stream in streams {
            var cursor = "0-0"
            repeat {
                heartbeat.beat(.reading)
                let reply = try await pool.pipeline(
                    [["XAUTOCLAIM", stream, configuration.group, consumer, minimumIdle, cursor, "COUNT", String(batchSize)]],
                    routingKey: stream)[0]
                if let error = reply.error { throw error }
                guard let parts = reply.array, parts.count >= 2, let next = parts[0].string, let list = parts[1].array else {
                    throw RedisError(code: .protocolViolation, message: "unexpected XAUTOCLAIM reply")
                }
                let entries = try Self.parseEntries(list, stream: stream)
                if !entries.isEmpty {
                    guard let count = await process(entries, heartbeat: heartbeat) else { return false }
                    if count > 0 {
                        claimed.add(count, ordering: .relaxed)
                        logger.info("claimed pending entries of an idle consumer", metadata: [
                            "stream": "\(stream)", "entries": "\(count)", "claim_idle": "\(configuration.claimIdle)",
                        ])
                    }
                }
                cursor = next
            } while cursor != "0-0" && !stop.isSet
        }
        return true
    }

    /// Applies entries in order. Entries already in flight here are skipped.
    /// - Returns: how many entries were new, or nil when the batch could not be
    ///   made durable (shutdown while the dead-letter store was down); then none
    ///   of it is acknowledged.
    private func process(_ entries: [StreamEntry], heartbeat: Heartbeat) async -> Int? {
        let tracked = progress.withLock { $0.track(entries) }
        guard !tracked.isEmpty else { return 0 }
        let batch = tracked.map { item in
            IncomingEvent(
                source: .redisStream(stream: item.entry.stream, entryID: item.entry.id),
                payload: Self.payload(of: item.entry.fields), format: configuration.format,
                timestampMilliseconds: item.entry.timestampMilliseconds)
        }
        let result = await pipeline.process(batch, heartbeat: heartbeat) { [self] index in
            progress.withLock { $0.tracker.complete(tracked[index].entry.stream, offset: tracked[index].sequence) }
        }
        guard result.isDurable else { return nil }
        processed.add(tracked.count, ordering: .relaxed)
        progress.withLock { progress in
            for (index, item) in tracked.enumerated() where !result.awaitingRedelete.contains(index) {
                progress.tracker.complete(item.entry.stream, offset: item.sequence)
            }
        }
        return tracked.count
    }

    // MARK: Acknowledging

    /// XACKs every entry of the finished prefix of each stream.
    private func acknowledge() async {
        let acknowledgements = progress.withLock { $0.takeAcknowledgements() }
        for acknowledgement in acknowledgements {
            let stream = acknowledgement.stream
            if acknowledgement.ids.isEmpty {
                progress.withLock { $0.acknowledged(acknowledgement) }
                continue
            }
            let commands = stride(from: 0, to: acknowledgement.ids.count, by: batchSize).map { start in
                ["XACK", stream, configuration.group] + acknowledgement.ids[start..<min(start + batchSize, acknowledgement.ids.count)]
            }
            do {
                let replies = try await pool.pipeline(commands, routingKey: stream)
                if let error = replies.lazy.compactMap(\.error).first {
                    // An error reply (NOGROUP, NOPERM) does not change by retrying; the
                    // entries stay pending and are claimed again later.
                    logger.error("XACK refused; the entries stay pending", metadata: [
                        "stream": "\(stream)", "entries": "\(acknowledgement.ids.count)", "error": "\(error)",
                    ])
                }
                progress.withLock { $0.acknowledged(acknowledgement) }
                let failures = acknowledgeFailures.exchange(0, ordering: .relaxed)
                if failures > 0 {
                    logger.info("XACK works again", metadata: ["stream": "\(stream)", "failures": "\(failures)"])
                }
            } catch {
                // The next round acknowledges the same or more entries.
                let failures = acknowledgeFailures.add(1, ordering: .relaxed).newValue
                if failures == 1 || failures % 100 == 0 {
                    logger.warning("XACK failed; will retry", metadata: [
                        "stream": "\(stream)", "error": "\(error)", "failures": "\(failures)",
                    ])
                }
                progress.withLock { $0.acknowledgementFailed(acknowledgement) }
            }
        }
    }

    /// Reading stopped (done by the caller): drain delayed redeletes up to the drain
    /// timeout, acknowledge what is finished.
    private func shutDown() async {
        let deadline = ContinuousClock.now + drainTimeout
        let drained = await pipeline.redeletes.drain(until: deadline)
        await acknowledge()
        logger.info("redis stream source stopped", metadata: [
            "drained": "\(drained)", "unfinished": "\(inFlight)",
        ])
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

/// Entries read per stream, numbered in read order so ``CompletionTracker`` can find
/// the finished prefix, and which of them are acknowledged.
struct StreamProgress: Sendable {
    struct Ledger: Sendable {
        var nextSequence: Int64 = 0
        /// Sequences below this are acknowledged.
        var acknowledgedThrough: Int64 = 0
        /// Entries read and not yet acknowledged.
        var idsBySequence: [Int64: String] = [:]
        var sequenceByID: [String: Int64] = [:]
    }

    struct Acknowledgement: Sendable {
        var stream: String
        var ids: [String]
        /// The sequence after the last entry of `ids`.
        var through: Int64
    }

    var tracker = CompletionTracker<String>()
    private var ledgers: [String: Ledger] = [:]

    /// Numbers and tracks entries not already in flight, in order.
    mutating func track(_ entries: [RedisStreamSource.StreamEntry]) -> [(entry: RedisStreamSource.StreamEntry, sequence: Int64)] {
        var fresh: [(entry: RedisStreamSource.StreamEntry, sequence: Int64)] = []
        for entry in entries {
            var ledger = ledgers[entry.stream, default: Ledger()]
            guard ledger.sequenceByID[entry.id] == nil else { continue }
            let sequence = ledger.nextSequence
            ledger.nextSequence += 1
            ledger.idsBySequence[sequence] = entry.id
            ledger.sequenceByID[entry.id] = sequence
            ledgers[entry.stream] = ledger
            tracker.track(entry.stream, offset: sequence)
            fresh.append((entry, sequence))
        }
        return fresh
    }

    /// Entries newly finished, with all earlier ones of their stream, per stream.
    mutating func takeAcknowledgements() -> [Acknowledgement] {
        var acknowledgements: [Acknowledgement] = []
        for (stream, ledger) in ledgers {
            guard let position = tracker.takeCommitPosition(stream), position > ledger.acknowledgedThrough else { continue }
            let ids = (ledger.acknowledgedThrough..<position).compactMap { ledger.idsBySequence[$0] }
            acknowledgements.append(Acknowledgement(stream: stream, ids: ids, through: position))
        }
        return acknowledgements
    }

    mutating func acknowledged(_ acknowledgement: Acknowledgement) {
        guard var ledger = ledgers[acknowledgement.stream], acknowledgement.through > ledger.acknowledgedThrough else { return }
        for sequence in ledger.acknowledgedThrough..<acknowledgement.through {
            if let id = ledger.idsBySequence.removeValue(forKey: sequence) {
                ledger.sequenceByID[id] = nil
            }
        }
        ledger.acknowledgedThrough = acknowledgement.through
        ledgers[acknowledgement.stream] = ledger
    }

    /// Offers the same entries again at the next `takeAcknowledgements`.
    mutating func acknowledgementFailed(_ acknowledgement: Acknowledgement) {
        tracker.resetCommitted(acknowledgement.stream)
    }
}
