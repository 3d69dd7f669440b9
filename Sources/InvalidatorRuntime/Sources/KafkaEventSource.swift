import InvalidatorCore
import InvalidatorKafka
import Logging
import ServiceLifecycle
import Synchronization

/// Consumes change events from Kafka, at least once.
///
/// Batches are processed in arrival order, so events of one partition are applied
/// in order on every node. A partition's offset is committed only up to the longest
/// prefix of events that are finished (applied, or durably dead-lettered, including
/// delayed redeletes).
public final class KafkaEventSource: Service, Sendable {
    public let configuration: KafkaSourceConfiguration
    private let pipeline: EventPipeline
    private let drainTimeout: Duration
    private let commitInterval: Duration
    private let logger: Logger
    private let tracker = Mutex(CompletionTracker<TopicPartition>())
    private let subscribed = Atomic<Bool>(false)
    private let processed = Atomic<Int>(0)
    private let metrics: WorkerMetrics
    private let liveness: LivenessMonitor
    private let stop = StopSignal()
    /// Per assigned partition, the committed position (next offset to read) behind
    /// `invalidator_consumer_lag`; nil while unknown (no committed offset yet).
    private let lagPositions = Mutex<[TopicPartition: Int64?]>([:])

    public init(
        configuration: KafkaSourceConfiguration, pipeline: EventPipeline, drainTimeout: Duration,
        commitInterval: Duration = .milliseconds(100), metrics: WorkerMetrics = .disabled,
        liveness: LivenessMonitor = LivenessMonitor(), logger: Logger
    ) {
        self.metrics = metrics
        self.liveness = liveness
        self.configuration = configuration
        self.pipeline = pipeline
        self.drainTimeout = drainTimeout
        self.commitInterval = commitInterval
        var logger = logger
        logger[metadataKey: "source"] = "kafka"
        self.logger = logger
    }

    /// True once the consumer has joined its group.
    public var isSubscribed: Bool { subscribed.load(ordering: .relaxed) }

    /// Events processed since start (applied or dead-lettered).
    public var processedEvents: Int { processed.load(ordering: .relaxed) }

    /// Events fetched and not yet finished.
    public var inFlight: Int { tracker.withLock { $0.inFlight } }

    public func run() async throws {
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                brokers: configuration.brokers, group: configuration.group, topics: configuration.topics,
                properties: configuration.properties),
            logger: logger)
        subscribed.store(true, ordering: .relaxed)
        logger.info("consuming", metadata: ["topics": "\(configuration.topics)", "group": "\(configuration.group)"])
        do {
            try await withTaskCancellationOrGracefulShutdownHandler {
                try await withThrowingTaskGroup(of: Void.self) { tasks in
                    tasks.addTask { try await self.liveness.monitor("kafka") { try await self.consume(consumer, heartbeat: $0) } }
                    // Commits on a timer, so work finished between batches (delayed
                    // redeletes, a dead-letter store coming back) is committed even
                    // when no new messages arrive.
                    tasks.addTask {
                        while true {
                            try await Task.sleep(for: self.commitInterval)
                            await self.commit(consumer)
                            await self.reportLag(consumer)
                        }
                    }
                    try await tasks.next()
                    tasks.cancelAll()
                }
            } onCancelOrGracefulShutdown: {
                self.stop.set()
            }
        } catch {
            logger.error("consumer failed", metadata: ["error": "\(error)"])
            await shutDown(consumer)
            throw error
        }
        await shutDown(consumer)
    }

    /// Reads until graceful shutdown, until the consumer closes, or until a batch
    /// cannot be made durable.
    ///
    /// Two batches are in flight at most: while one is applied, the next is
    /// decoded and planned, so both cores work. Batches are still applied one
    /// after another, in order.
    ///
    /// Liveness: the wait for events is bounded (`LivenessMonitor.idleWait`), so an
    /// idle loop still goes round and beats `heartbeat`. While a batch is being
    /// applied, its beats (see `EventPipeline.apply`) speak for the loop, and an idle
    /// round waits for it: a batch that hangs is not hidden behind idle rounds.
    private func consume(_ consumer: KafkaConsumer, heartbeat: Heartbeat) async throws {
        try await withThrowingTaskGroup(of: Bool.self) { applying in
            var isApplying = false
            /// Waits for the batch being applied; false if it could not be made durable.
            func finishApplying() async throws -> Bool {
                guard isApplying else { return true }
                isApplying = false
                return try await applying.next() ?? true
            }
            reading: while !stop.isSet {
                if !isApplying { heartbeat.beat(.reading) }
                switch try await nextEvent(consumer) {
                case .closed:
                    break reading
                case .idle:
                    guard try await finishApplying() else { return }
                case .event(.messages(let messages)):
                    let runs = Self.partitionRuns(messages)
                    let prepared = await prepare(messages, runs: runs)
                    guard try await finishApplying() else { return }
                    applying.addTask { await self.apply(prepared, messages, runs: runs, heartbeat: heartbeat) }
                    isApplying = true
                case .event(.partitionsAssigned(let partitions)):
                    logger.info("partitions assigned", metadata: ["partitions": "\(partitions.map(\.description))"])
                case .event(.partitionsRevoked(let revocation)):
                    guard try await finishApplying() else { return }
                    await handOver(revocation, consumer: consumer, heartbeat: heartbeat)
                }
            }
            _ = try await finishApplying()
        }
    }

    private enum Delivery {
        case event(KafkaConsumerEvent)
        /// Nothing within `idleWait`, or a stop was requested.
        case idle
        /// The consumer closed.
        case closed
    }

    /// The consumer's next event, waiting at most `idleWait` (less on a stop).
    private func nextEvent(_ consumer: KafkaConsumer) async throws -> Delivery {
        try await withThrowingTaskGroup(of: Delivery.self) { race in
            race.addTask {
                var events = consumer.events.makeAsyncIterator()
                return try await events.next().map(Delivery.event) ?? .closed
            }
            race.addTask {
                await self.stop.pause(for: self.liveness.idleWait)
                return .idle
            }
            let first = try await race.next()!
            race.cancelAll()
            guard case .idle = first else { return first }
            // The cancelled read returns an event that arrived meanwhile (never lost),
            // else nil, which here means the cancellation, not the end.
            if case .event(let event) = try await race.next()! { return .event(event) }
            return .idle
        }
    }

    /// - Parameter runs: `partitionRuns(messages)`, shared with `apply`.
    private func prepare(_ messages: [KafkaMessage], runs: [(TopicPartition, Range<Int>)]) async -> EventPipeline.PreparedBatch {
        tracker.withLock { tracker in
            for (partition, run) in runs {
                tracker.track(partition, offsets: run.lazy.map { messages[$0].offset })
            }
        }
        return await pipeline.prepare(messages.map { message in
            IncomingEvent(
                source: .kafka(topic: message.topic, partition: message.partition, offset: message.offset),
                payload: message.value, format: configuration.format,
                headers: message.headers.map { ($0.key, $0.value) }, timestampMilliseconds: message.timestamp)
        })
    }

    /// Applies one prepared batch. False when it could not be made durable
    /// (shutdown while the dead-letter store was down); then nothing of it is committed.
    private func apply(
        _ prepared: EventPipeline.PreparedBatch, _ messages: [KafkaMessage], runs: [(TopicPartition, Range<Int>)], heartbeat: Heartbeat
    ) async -> Bool {
        let result = await pipeline.apply(prepared, heartbeat: heartbeat) { [self] index in
            tracker.withLock { $0.complete(messages[index].topicPartition, offset: messages[index].offset) }
        }
        guard result.isDurable else { return false }
        processed.add(messages.count, ordering: .relaxed)
        let awaiting = result.awaitingRedelete
        tracker.withLock { tracker in
            for (partition, run) in runs {
                tracker.complete(partition, offsets: run.lazy.filter { awaiting.isEmpty || !awaiting.contains($0) }.map { messages[$0].offset })
            }
        }
        return true
    }

    /// Index ranges of `messages` from one partition each: a batch holds runs of
    /// one partition, so the tracker hashes a partition per run, not per message.
    private static func partitionRuns(_ messages: [KafkaMessage]) -> [(TopicPartition, Range<Int>)] {
        var runs: [(TopicPartition, Range<Int>)] = []
        var start = 0
        for index in messages.indices.dropFirst()
        where messages[index].partition != messages[start].partition || messages[index].topic != messages[start].topic {
            runs.append((messages[start].topicPartition, start..<index))
            start = index
        }
        if !messages.isEmpty { runs.append((messages[start].topicPartition, start..<messages.count)) }
        return runs
    }

    private func commit(_ consumer: KafkaConsumer) async {
        let positions = tracker.withLock { $0.takeCommitPositions() }
        guard !positions.isEmpty else { return }
        do {
            try await consumer.commit(positions)
            lagPositions.withLock { known in
                for (partition, position) in positions where known[partition] != nil { known[partition] = position }
            }
        } catch {
            // The next commit carries the same or later positions.
            logger.warning("offset commit failed; will retry", metadata: ["error": "\(error)"])
            tracker.withLock { tracker in
                for partition in positions.keys { tracker.resetCommitted(partition) }
            }
        }
    }

    /// Sets `invalidator_consumer_lag` for each assigned partition: the high
    /// watermark last seen by the fetcher minus the committed position. A newly
    /// assigned partition's committed offset is read from the group once; one with
    /// none yet counts from its low watermark.
    private func reportLag(_ consumer: KafkaConsumer) async {
        let assigned = consumer.assignment
        let (unknown, gone) = lagPositions.withLock { known in
            (assigned.filter { known[$0] == nil }, known.keys.filter { !assigned.contains($0) })
        }
        for partition in gone { metrics.forgetConsumerLag(topic: partition.topic, partition: partition.partition) }
        var fetched: [TopicPartition: Int64] = [:]
        if !unknown.isEmpty {
            fetched = (try? await consumer.committed(Array(unknown), timeout: .seconds(2))) ?? [:]
        }
        let positions = lagPositions.withLock { known in
            for partition in gone { known[partition] = nil }
            for partition in unknown where known[partition] == nil {
                known[partition] = .some(fetched[partition])
            }
            return known
        }
        for (partition, position) in positions {
            guard let watermarks = consumer.cachedWatermarks(partition), watermarks.high >= 0 else { continue }
            let committed = position ?? watermarks.low
            metrics.consumerLag(topic: partition.topic, partition: partition.partition, lag: watermarks.high - max(committed, 0))
        }
    }

    /// Partitions are leaving: let their delayed redeletes finish (bounded by the
    /// drain timeout), commit what is finished, and hand them back.
    private func handOver(_ revocation: KafkaRevocation, consumer: KafkaConsumer, heartbeat: Heartbeat) async {
        let partitions = revocation.partitions
        logger.info("partitions revoked", metadata: ["partitions": "\(partitions.map(\.description))", "lost": "\(revocation.isLost)"])
        if !revocation.isLost {
            let deadline = ContinuousClock.now + drainTimeout
            while ContinuousClock.now < deadline,
                  tracker.withLock({ tracker in partitions.contains { tracker.unfinishedCount($0) > 0 } }) {
                heartbeat.beat(.handingOver)
                try? await Task.sleep(for: .milliseconds(10))
            }
            await commit(consumer)
        }
        tracker.withLock { tracker in
            for partition in partitions { tracker.forget(partition) }
        }
        revocation.complete()
    }

    /// Stop fetching (done by the caller), drain in-flight work up to the drain
    /// timeout, commit what is finished, leave the group.
    private func shutDown(_ consumer: KafkaConsumer) async {
        let deadline = ContinuousClock.now + drainTimeout
        let drained = await pipeline.redeletes.drain(until: deadline)
        await commit(consumer)
        logger.info("kafka source stopped", metadata: [
            "drained": "\(drained)", "unfinished": "\(tracker.withLock { $0.inFlight })",
        ])
        await consumer.close()
        subscribed.store(false, ordering: .relaxed)
    }
}
