import InvalidatorCore
import InvalidatorRedis
import Logging
import ServiceLifecycle
import Synchronization

/// Consumes change events from Redis pub/sub: at most once.
///
/// Pub/sub keeps nothing for a subscriber that is not connected. Events published
/// while the subscription is down (a node restart, a network cut, or a worker so slow
/// that the node closed it at its pub/sub output buffer limit) are lost. Each loss is
/// logged as a warning saying so, and each resubscription is counted in
/// ``reconnections``. Use `redis_stream` where a lost invalidation is not acceptable.
///
/// One dedicated connection subscribes to every channel (SUBSCRIBE) and pattern
/// (PSUBSCRIBE) on the node owning the first channel or pattern name; in a cluster,
/// every node sees every PUBLISH. The source waits on the socket for pushed
/// messages and processes them in batches of what has arrived, up to `batchSize`,
/// without waiting for a batch to fill. Nothing is sent while idle, except a PING
/// after `keepalive` of silence: its reply proves the subscription alive, and no
/// reply within the pool's command timeout means a dead connection (resubscribe).
/// The wait on the socket is cut into slices of `stopCheckInterval` so a stop is
/// noticed within one slice; a slice ending sends nothing.
///
/// On graceful shutdown it stops waiting, unsubscribes, processes the messages that
/// arrived before the unsubscription was confirmed, and lets delayed redeletes finish
/// up to the drain timeout.
package final class RedisPubSubSource: Service, Sendable {
    package let configuration: RedisPubSubSourceConfiguration
    private let adapter: PubSubAdapter
    private let driver: AtLeastOnceDriver<PubSubAdapter>
    private let logger: Logger

    package init(
        configuration: RedisPubSubSourceConfiguration, pool: RedisPool, pipeline: EventPipeline, drainTimeout: Duration,
        batchSize: Int = 1000, stopCheckInterval: Duration = .milliseconds(100), metrics: WorkerMetrics = .disabled,
        liveness: LivenessMonitor = LivenessMonitor(), logger: Logger
    ) {
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "source"] = "redis_pubsub"
        self.logger = logger
        adapter = PubSubAdapter(
            configuration: configuration, pool: pool, batchSize: batchSize, stopCheckInterval: stopCheckInterval,
            metrics: metrics, logger: logger)
        // No commit timer: pub/sub keeps no positions (at most once).
        driver = AtLeastOnceDriver(
            adapter: adapter, pipeline: pipeline, liveness: liveness, drainTimeout: drainTimeout,
            commitInterval: nil, logger: logger)
    }

    /// True while the channels and patterns are subscribed.
    package var isSubscribed: Bool { adapter.isSubscribed }

    /// Times the subscription was lost and set up again since start.
    package var reconnections: Int { adapter.reconnections }

    /// Events processed since start (applied or dead-lettered).
    package var processedEvents: Int { driver.processedEvents }

    package func run() async throws {
        logger.info("subscribing", metadata: [
            "channels": "\(configuration.channels)", "patterns": "\(configuration.patterns)",
        ])
        try await driver.run()
        logger.info("redis pub/sub source stopped", metadata: ["reconnections": "\(reconnections)"])
    }
}

/// The subscription as the driver sees it: batches of what has arrived, in one
/// sequence of positions that is never committed.
///
/// An actor: the driver's loop calls `next` and `stopFetching` one at a time, and
/// the subscription's state stays with it across those awaits.
actor PubSubAdapter: SourceAdapter {
    nonisolated let loopName = "redis_pubsub"
    private let configuration: RedisPubSubSourceConfiguration
    private let pool: RedisPool
    private let batchSize: Int
    private let stopCheckInterval: Duration
    private let metrics: WorkerMetrics
    private let logger: Logger
    private let interruption = StopSignal()
    private let subscribed = Atomic<Bool>(false)
    private let reconnectionCount = Atomic<Int>(0)
    private var subscription: Subscription?
    private var backoff = ReconnectBackoff()
    private var retryAt: ContinuousClock.Instant?
    private var lostAt: ContinuousClock.Instant?
    private var nextPosition: Int64 = 0

    init(
        configuration: RedisPubSubSourceConfiguration, pool: RedisPool, batchSize: Int, stopCheckInterval: Duration,
        metrics: WorkerMetrics, logger: Logger
    ) {
        self.configuration = configuration
        self.pool = pool
        self.batchSize = batchSize
        self.stopCheckInterval = stopCheckInterval
        self.metrics = metrics
        self.logger = logger
    }

    nonisolated var isSubscribed: Bool { subscribed.load(ordering: .relaxed) }

    nonisolated var reconnections: Int { reconnectionCount.load(ordering: .relaxed) }

    private var routingKey: String {
        configuration.channels.first ?? configuration.patterns.first ?? ""
    }

    /// Subscribes when needed, then waits on the socket (up to `timeout` or one stop
    /// check slice) and takes what has arrived; a lost subscription is set up again
    /// with backoff.
    func next(timeout: Duration) async throws -> SourceInput<Int> {
        if let retryAt, ContinuousClock.now < retryAt {
            // Timer: the resubscription backoff (ends early on stop).
            await interruption.pause(for: min(retryAt - ContinuousClock.now, timeout))
            return .idle
        }
        do throws(RedisError) {
            if subscription == nil {
                let early = try await subscribe()
                if !early.isEmpty { return .batch(batch(early)) }
            }
            guard var current = subscription else { return .idle }
            let messages = try await current.receive(
                limit: batchSize, waitingAtMost: min(timeout, stopCheckInterval), decoder: configuration.decoder)
            subscription = current
            return messages.isEmpty ? .idle : .batch(batch(messages))
        } catch {
            await lose(error)
            return .idle
        }
    }

    private func subscribe() async throws(RedisError) -> [IncomingEvent] {
        let connection = try await pool.dedicatedConnection(routingKey: routingKey)
        var fresh = Subscription(
            connection: connection, keepalive: configuration.keepalive, replyTimeout: pool.configuration.commandTimeout)
        subscription = fresh
        let early = try await fresh.subscribe(
            channels: configuration.channels, patterns: configuration.patterns, decoder: configuration.decoder)
        subscription = fresh
        subscribed.store(true, ordering: .relaxed)
        if let lostAt {
            let count = reconnectionCount.add(1, ordering: .relaxed).newValue
            metrics.pubSubReconnection()
            logger.warning("resubscribed; events published while unsubscribed were lost (at-most-once)", metadata: [
                "node": "\(connection.endpoint)", "unsubscribed_for": "\(ContinuousClock.now - lostAt)",
                "reconnections": "\(count)", "failures": "\(backoff.failures)",
            ])
        } else {
            logger.info("subscribed", metadata: ["node": "\(connection.endpoint)"])
        }
        lostAt = nil
        retryAt = nil
        backoff.reset()
        return early
    }

    private func lose(_ error: RedisError) async {
        if let subscription {
            await subscription.connection.close()
        }
        subscription = nil
        let wasSubscribed = subscribed.exchange(false, ordering: .relaxed)
        if wasSubscribed {
            lostAt = ContinuousClock.now
            logger.warning("subscription lost; events published until it is back are lost (at-most-once)", metadata: [
                "error": "\(error)", "channels": "\(configuration.channels)", "patterns": "\(configuration.patterns)",
            ])
        }
        let delay = backoff.next()
        retryAt = ContinuousClock.now + delay
        if !wasSubscribed, backoff.failures == 1 || backoff.failures % 20 == 0 {
            logger.warning("cannot subscribe; retrying with backoff", metadata: [
                "error": "\(error)", "attempt": "\(backoff.failures)",
            ])
        }
    }

    private func batch(_ events: [IncomingEvent]) -> SourceBatch<Int> {
        let first = nextPosition
        nextPosition += Int64(events.count)
        return SourceBatch(events: events, offsets: Array(first..<nextPosition), runs: [(0, 0..<events.count)])
    }

    nonisolated func interrupt() {
        interruption.set()
    }

    func commit(_ positions: [Int: Int64]) async throws {}

    /// Messages already on their way to this worker are processed, not dropped:
    /// everything queued before the server's unsubscription confirmations.
    func stopFetching() async -> SourceBatch<Int>? {
        guard let subscription else { return nil }
        self.subscription = nil
        defer { subscribed.store(false, ordering: .relaxed) }
        let last = Task.isCancelled ? nil : try? await subscription.unsubscribe(decoder: configuration.decoder)
        await subscription.connection.close()
        guard let last, !last.isEmpty else { return nil }
        return batch(last)
    }
}

/// A connection in subscribed mode, waiting on its socket for pushed messages.
private struct Subscription {
    let connection: RedisConnection
    /// Silence after which a PING checks the connection.
    let keepalive: Duration
    /// How long the keepalive PING's reply may take before the connection counts as dead.
    let replyTimeout: Duration
    private var lastHeard = ContinuousClock.now
    /// When the keepalive PING still unanswered was sent.
    private var pingSentAt: ContinuousClock.Instant?

    init(connection: RedisConnection, keepalive: Duration, replyTimeout: Duration) {
        self.connection = connection
        self.keepalive = keepalive
        self.replyTimeout = replyTimeout
    }

    /// SUBSCRIBE then PSUBSCRIBE, waiting for every confirmation.
    /// - Returns: messages that arrived in between.
    mutating func subscribe(channels: [String], patterns: [String], decoder: EventDecoder) async throws(RedisError) -> [IncomingEvent] {
        var early: [IncomingEvent] = []
        for (command, names) in [("SUBSCRIBE", channels), ("PSUBSCRIBE", patterns)] where !names.isEmpty {
            var confirmed = 0
            var reply = try await connection.send([command] + names)
            while true {
                switch try PubSubPush(reply) {
                case .confirmation(let kind) where kind == command.lowercased():
                    confirmed += 1
                case .message(let channel, let payload):
                    early.append(IncomingEvent(source: .redisPubSub(channel: channel), payload: payload, decoder: decoder))
                case .confirmation, .pong:
                    break
                case .unsubscribed:
                    throw RedisError(code: .protocolViolation, message: "unsubscribed by the server")
                }
                if confirmed == names.count { break }
                reply = try await connection.receive()
            }
        }
        return early
    }

    /// Messages that arrive within `wait`, and those right behind them, up to `limit`.
    mutating func receive(limit: Int, waitingAtMost wait: Duration, decoder: EventDecoder) async throws(RedisError) -> [IncomingEvent] {
        try await keepAliveWhenQuiet()
        var events: [IncomingEvent] = []
        var next = try await connection.receive(waitingAtMost: wait)
        while let reply = next {
            lastHeard = ContinuousClock.now
            switch try PubSubPush(reply) {
            case .message(let channel, let payload):
                events.append(IncomingEvent(source: .redisPubSub(channel: channel), payload: payload, decoder: decoder))
            case .pong:
                pingSentAt = nil
            case .confirmation:
                break
            case .unsubscribed:
                throw RedisError(code: .protocolViolation, message: "unsubscribed by the server")
            }
            if events.count >= limit { break }
            next = try await connection.receive(waitingAtMost: .zero)
        }
        return events
    }

    /// After `keepalive` of silence, sends a PING; when its reply has not come
    /// within `replyTimeout`, the connection is dead.
    private mutating func keepAliveWhenQuiet() async throws(RedisError) {
        let now = ContinuousClock.now
        if let pingSentAt {
            guard now - pingSentAt <= replyTimeout else {
                throw RedisError(
                    code: .timeout, message: "\(connection.endpoint): no reply to the keepalive PING within \(replyTimeout)")
            }
        } else if now - lastHeard >= keepalive {
            try await connection.post(["PING"])
            pingSentAt = now
        }
    }

    /// UNSUBSCRIBE and PUNSUBSCRIBE from everything.
    /// - Returns: the messages that arrived before the last confirmation.
    func unsubscribe(decoder: EventDecoder) async throws(RedisError) -> [IncomingEvent] {
        var events: [IncomingEvent] = []
        // `send` returns whichever reply comes next; every reply is classified below.
        var replies = [try await connection.send(["UNSUBSCRIBE"]), try await connection.send(["PUNSUBSCRIBE"])]
        while true {
            for reply in replies {
                switch try PubSubPush(reply) {
                case .message(let channel, let payload):
                    events.append(IncomingEvent(source: .redisPubSub(channel: channel), payload: payload, decoder: decoder))
                case .unsubscribed(let remaining) where remaining == 0:
                    return events
                case .unsubscribed, .confirmation, .pong:
                    break
                }
            }
            replies = [try await connection.receive()]
        }
    }
}

/// What a subscribed connection pushes.
private enum PubSubPush {
    case message(channel: String, payload: [UInt8])
    case confirmation(String)
    /// An unsubscription confirmed, with the number of subscriptions left.
    case unsubscribed(remaining: Int64)
    case pong

    /// Classifies a reply on a subscribed connection. Anything else (an error reply,
    /// a plain PONG from a connection that is no longer subscribed) throws, and the
    /// subscription is set up again.
    init(_ reply: RedisReply) throws(RedisError) {
        if let error = reply.error { throw error }
        guard let parts = reply.array, let kind = parts.first?.string?.lowercased() else {
            throw RedisError(code: .protocolViolation, message: "unexpected reply on a subscribed connection")
        }
        switch kind {
        case "message" where parts.count == 3:
            self = .message(channel: parts[1].string ?? "", payload: parts[2].bytes ?? [])
        case "pmessage" where parts.count == 4:
            self = .message(channel: parts[2].string ?? "", payload: parts[3].bytes ?? [])
        case "subscribe", "psubscribe":
            self = .confirmation(kind)
        case "unsubscribe", "punsubscribe":
            self = .unsubscribed(remaining: parts.last?.integer ?? 0)
        case "pong":
            self = .pong
        default:
            throw RedisError(code: .protocolViolation, message: "unexpected '\(kind)' on a subscribed connection")
        }
    }
}
