import InvalidatorCore
import InvalidatorRedis
import Logging
import Synchronization

/// One reader's streams as the driver sees them: each stream is a partition whose
/// positions number its entries in read order, and committing a position
/// acknowledges (XACK) the entries below it.
///
/// One dedicated connection blocks in XREADGROUP for new entries; pool
/// connections, with the pool's retries, carry XGROUP CREATE, XAUTOCLAIM, XACK,
/// and the CLIENT UNBLOCK that ends a blocked read at shutdown.
/// An actor: the driver's loop calls `next` one at a time, and the reading state
/// stays with it across awaits.
actor StreamReaderAdapter: SourceAdapter {
    private enum Phase {
        /// Creating the groups and opening the reading connection.
        case connecting
        /// Re-reading entries this consumer read before and did not acknowledge.
        case ownPending(stream: Int, after: String)
        case reading
    }

    nonisolated let loopName: String
    private let streams: [String]
    private let configuration: RedisStreamSourceConfiguration
    private let consumer: String
    private let pool: RedisPool
    private let blockTime: Duration
    private let batchSize: Int
    private let onClaimed: @Sendable (Int) -> Void
    private let logger: Logger
    private let interruption = StopSignal()
    /// The reading connection's blocked read, as shutdown must see it: one lock, so
    /// a stop never misses a read that is about to block.
    private let blockedRead = Mutex(BlockedRead())
    private let ready = Atomic<Bool>(false)
    /// XREADGROUP's arguments after its BLOCK time.
    private let readNewStreams: [String]
    private var phase = Phase.connecting
    private var connection: RedisConnection?
    private var backoff = ReconnectBackoff()
    private var retryAt: ContinuousClock.Instant?
    /// When to look for abandoned entries next, and where the current claim round stands.
    private var nextClaim = ContinuousClock.now
    private var claimRound: (stream: Int, cursor: String)?
    private var ledgers: [String: StreamLedger] = [:]

    init(
        streams: [String], configuration: RedisStreamSourceConfiguration, consumer: String, pool: RedisPool,
        blockTime: Duration, batchSize: Int, onClaimed: @escaping @Sendable (Int) -> Void, logger: Logger
    ) {
        self.streams = streams
        self.configuration = configuration
        self.consumer = consumer
        self.pool = pool
        self.blockTime = blockTime
        self.batchSize = batchSize
        self.onClaimed = onClaimed
        self.logger = logger
        loopName = "redis_stream \(streams.joined(separator: ","))"
        readNewStreams = ["STREAMS"] + streams + streams.map { _ in ">" }
    }

    /// The groups exist and the reading connection works.
    nonisolated var isReady: Bool { ready.load(ordering: .relaxed) }

    /// A claim round every `claim_idle`: an abandoned entry is claimed between one and
    /// two `claim_idle` after its last delivery, and an idle worker sends two
    /// XAUTOCLAIMs a minute per stream with the default 30 s.
    private var claimInterval: Duration { max(configuration.claimIdle, .milliseconds(100)) }

    /// One step of reading: connect, then this consumer's own pending entries, then
    /// (when due) entries abandoned by dead consumers, then new entries. Each step
    /// that finds entries returns them; a failure closes the connection and the
    /// next call tries again after a backoff.
    func next(timeout: Duration) async throws -> SourceInput<String> {
        if let retryAt, ContinuousClock.now < retryAt {
            // Timer: the reconnection backoff (ends early on stop).
            await interruption.pause(for: min(retryAt - ContinuousClock.now, timeout))
            return .idle
        }
        do throws(RedisError) {
            while true {
                switch phase {
                case .connecting:
                    try await connect()
                    phase = .ownPending(stream: 0, after: "0-0")
                case .ownPending(let index, let after):
                    guard index < streams.count else {
                        phase = .reading
                        becameReady()
                        continue
                    }
                    if let batch = try await readOwnPending(index, after: after) { return .batch(batch) }
                case .reading:
                    if ContinuousClock.now >= nextClaim, let batch = try await claimAbandoned() { return .batch(batch) }
                    if ContinuousClock.now < nextClaim {
                        return try await readNewEntries()
                    }
                }
            }
        } catch {
            await fail(error)
            return .idle
        }
    }

    private func connect() async throws(RedisError) {
        for stream in streams {
            // At `0` with MKSTREAM; an existing group (BUSYGROUP) is kept as it is.
            let reply = try await pool.pipeline(
                [["XGROUP", "CREATE", stream, configuration.group, "0", "MKSTREAM"]], routingKey: stream)[0]
            if let error = reply.error, !error.message.hasPrefix("BUSYGROUP") { throw error }
        }
        let reading = try await pool.dedicatedConnection(
            routingKey: streams[0], commandTimeout: pool.configuration.commandTimeout + blockTime)
        connection = reading
        try await identifyReadingConnection(reading)
    }

    /// The reading connection's id, for CLIENT UNBLOCK at shutdown.
    private func identifyReadingConnection(_ connection: RedisConnection) async throws(RedisError) {
        let reply = try await connection.send(["CLIENT", "ID"])
        blockedRead.withLock { $0.clientID = reply.integer }
        if reply.integer == nil, backoff.failures == 0 {
            logger.warning("CLIENT ID refused; at shutdown a blocked XREADGROUP is waited for (up to its BLOCK time)", metadata: [
                "streams": "\(streams)", "reply": "\(reply.error.map { "\($0)" } ?? "not an integer")",
                "block": "\(blockTime)",
            ])
        }
    }

    private func becameReady() {
        ready.store(true, ordering: .relaxed)
        if backoff.failures > 0 {
            logger.info("reading streams again", metadata: [
                "streams": "\(streams)", "node": "\(connection.map { "\($0.endpoint)" } ?? "-")", "attempts": "\(backoff.failures)",
            ])
        }
        backoff.reset()
    }

    /// Entries this consumer read earlier and never acknowledged (a previous run
    /// under the same name, or replies lost with a connection); nil when a page had
    /// nothing new. Moves to the next stream at the end of one.
    private func readOwnPending(_ index: Int, after: String) async throws(RedisError) -> SourceBatch<String>? {
        let stream = streams[index]
        let entries = try await send(
            ["XREADGROUP", "GROUP", configuration.group, consumer, "COUNT", String(batchSize), "STREAMS", stream, after])
        guard let last = entries.last else {
            phase = .ownPending(stream: index + 1, after: "0-0")
            return nil
        }
        phase = .ownPending(stream: index, after: last.id)
        let batch = track(entries)
        if let batch {
            logger.info("processing entries this consumer read before and did not acknowledge", metadata: [
                "stream": "\(stream)", "entries": "\(batch.events.count)",
            ])
        }
        return batch
    }

    /// One XAUTOCLAIM page of entries idle longer than `claim_idle`; nil when it had
    /// nothing new. A round goes through every stream, then waits `claim_idle`.
    private func claimAbandoned() async throws(RedisError) -> SourceBatch<String>? {
        let (index, cursor) = claimRound ?? (0, "0-0")
        let stream = streams[index]
        let reply = try await pool.pipeline(
            [["XAUTOCLAIM", stream, configuration.group, consumer, String(configuration.claimIdle.milliseconds), cursor,
              "COUNT", String(batchSize)]],
            routingKey: stream)[0]
        if let error = reply.error { throw error }
        guard let parts = reply.array, parts.count >= 2, let next = parts[0].string, let list = parts[1].array else {
            throw RedisError(code: .protocolViolation, message: "unexpected XAUTOCLAIM reply")
        }
        if next != "0-0" {
            claimRound = (index, next)
        } else if index + 1 < streams.count {
            claimRound = (index + 1, "0-0")
        } else {
            claimRound = nil
            nextClaim = ContinuousClock.now + claimInterval
        }
        guard let batch = track(try RedisStreamSource.parseEntries(list, stream: stream)) else { return nil }
        onClaimed(batch.events.count)
        logger.info("claimed pending entries of an idle consumer", metadata: [
            "stream": "\(stream)", "entries": "\(batch.events.count)", "claim_idle": "\(configuration.claimIdle)",
        ])
        return batch
    }

    private func readNewEntries() async throws(RedisError) -> SourceInput<String> {
        let mayRead = blockedRead.withLock { state in
            guard !state.isStopping else { return false }
            state.isReading = true
            return true
        }
        guard mayRead else { return .idle }
        defer { blockedRead.withLock { $0.isReading = false } }
        // Back in time for the next claim round; BLOCK 0 would wait for ever.
        let block = max(min(blockTime, nextClaim - ContinuousClock.now), .milliseconds(1))
        let entries = try await send(
            ["XREADGROUP", "GROUP", configuration.group, consumer, "COUNT", String(batchSize), "BLOCK", String(block.milliseconds)]
                + readNewStreams)
        return track(entries).map(SourceInput.batch) ?? .idle
    }

    private func send(_ command: [String]) async throws(RedisError) -> [RedisStreamSource.StreamEntry] {
        guard let connection else { throw RedisError(code: .connection, message: "no reading connection") }
        let reply = try await connection.send(command)
        if let error = reply.error { throw error }
        return try RedisStreamSource.parseRead(reply)
    }

    private func fail(_ error: RedisError) async {
        ready.store(false, ordering: .relaxed)
        await connection?.close()
        connection = nil
        phase = .connecting
        claimRound = nil
        nextClaim = ContinuousClock.now
        let delay = backoff.next()
        retryAt = ContinuousClock.now + delay
        if backoff.failures == 1 || backoff.failures % 20 == 0 {
            let missingGroup = error.message.hasPrefix("NOGROUP")
            logger.warning(
                missingGroup
                    ? "consumer group is missing (stream deleted, or node restarted empty); recreating it"
                    : "cannot read streams; retrying with backoff",
                metadata: ["streams": "\(streams)", "error": "\(error)", "attempt": "\(backoff.failures)"])
        }
    }

    /// Numbers the entries not already in flight here, in order, as a batch; nil when none is new.
    private func track(_ entries: [RedisStreamSource.StreamEntry]) -> SourceBatch<String>? {
        var events: [IncomingEvent] = []
        var offsets: [Int64] = []
        var names: [String] = []
        for entry in entries {
            // In place through the dictionary: a copy of a ledger per entry would cost O(in flight).
            guard let sequence = ledgers[entry.stream, default: StreamLedger()].track(entry.id) else { continue }
            events.append(IncomingEvent(
                source: .redisStream(stream: entry.stream, entryID: entry.id),
                payload: RedisStreamSource.payload(of: entry.fields), decoder: configuration.decoder,
                timestampMilliseconds: entry.timestampMilliseconds))
            offsets.append(sequence)
            names.append(entry.stream)
        }
        guard !events.isEmpty else { return nil }
        return SourceBatch(events: events, offsets: offsets, partition: { names[$0] })
    }

    nonisolated func interrupt() {
        interruption.set()
        let blocked = blockedRead.withLock { state in
            state.isStopping = true
            return state.isReading ? state.clientID : nil
        }
        if let blocked {
            Task { await unblockRead(clientID: blocked) }
        }
    }

    /// Sends CLIENT UNBLOCK for the reading connection until its XREADGROUP has
    /// returned: one that reaches the node just before the read blocks has no effect.
    private nonisolated func unblockRead(clientID: Int64) async {
        while blockedRead.withLock({ $0.isReading }) {
            do {
                let reply = try await pool.pipeline([["CLIENT", "UNBLOCK", String(clientID)]], routingKey: streams[0])[0]
                if let error = reply.error {
                    logger.warning("CLIENT UNBLOCK refused; stopping once the blocked XREADGROUP returns", metadata: [
                        "streams": "\(streams)", "error": "\(error)", "block": "\(blockTime)",
                    ])
                    return
                }
            } catch {
                // The node is unreachable: the blocked read fails on its own.
                return
            }
            // Timer: lets the unblocked read return before asking again.
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    /// XACKs, per stream, every entry below its position.
    func commit(_ positions: [String: Int64]) async throws {
        for (stream, position) in positions {
            guard let ids = ledgers[stream]?.ids(below: position), !ids.isEmpty else {
                ledgers[stream]?.acknowledge(below: position)
                continue
            }
            let commands = stride(from: 0, to: ids.count, by: batchSize).map { start in
                ["XACK", stream, configuration.group] + ids[start..<min(start + batchSize, ids.count)]
            }
            let replies = try await pool.pipeline(commands, routingKey: stream)
            if let error = replies.lazy.compactMap(\.error).first {
                // An error reply (NOGROUP, NOPERM) does not change by retrying; the
                // entries stay pending and are claimed again later.
                logger.error("XACK refused; the entries stay pending", metadata: [
                    "stream": "\(stream)", "entries": "\(ids.count)", "error": "\(error)",
                ])
            }
            ledgers[stream]?.acknowledge(below: position)
        }
    }

    func close() async {
        ready.store(false, ordering: .relaxed)
        await connection?.close()
        connection = nil
    }
}

/// Whether the reading connection is in XREADGROUP, and whether shutdown has begun.
private struct BlockedRead {
    var isReading = false
    var isStopping = false
    /// The reading connection's CLIENT ID; nil when refused (a restricted ACL user).
    var clientID: Int64?
}

/// The entries of one stream read and not yet acknowledged, numbered in read order.
struct StreamLedger: Sendable {
    /// The number of the first entry in `ids`.
    private var firstSequence: Int64 = 0
    /// Ids in read order, from `firstSequence` on.
    private var ids: [String] = []
    private var inFlight: Set<String> = []

    /// Numbers a newly read entry; nil when it is already in flight here.
    mutating func track(_ id: String) -> Int64? {
        guard inFlight.insert(id).inserted else { return nil }
        ids.append(id)
        return firstSequence + Int64(ids.count - 1)
    }

    /// The ids numbered below `position` and not yet acknowledged.
    func ids(below position: Int64) -> ArraySlice<String> {
        ids.prefix(max(0, min(Int(clamping: position - firstSequence), ids.count)))
    }

    /// Forgets the entries below `position`. Safe to repeat, and in any order.
    mutating func acknowledge(below position: Int64) {
        let count = max(0, min(Int(clamping: position - firstSequence), ids.count))
        for id in ids.prefix(count) { inFlight.remove(id) }
        ids.removeFirst(count)
        firstSequence += Int64(count)
    }
}
