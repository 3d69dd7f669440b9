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

    public init(
        configuration: KafkaSourceConfiguration, pipeline: EventPipeline, drainTimeout: Duration,
        commitInterval: Duration = .milliseconds(100), logger: Logger
    ) {
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
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await self.consume(consumer) }
                // Commits on a timer, so work finished between batches (delayed
                // redeletes, a dead-letter store coming back) is committed even
                // when no new messages arrive.
                tasks.addTask {
                    while true {
                        try await Task.sleep(for: self.commitInterval)
                        await self.commit(consumer)
                    }
                }
                try await tasks.next()
                tasks.cancelAll()
            }
        } catch {
            logger.error("consumer failed", metadata: ["error": "\(error)"])
            await shutDown(consumer)
            throw error
        }
        await shutDown(consumer)
    }

    /// Reads until graceful shutdown or until a batch cannot be made durable.
    private func consume(_ consumer: KafkaConsumer) async throws {
        for try await event in consumer.events.cancelOnGracefulShutdown() {
            switch event {
            case .messages(let messages):
                guard await process(messages) else { return }
            case .partitionsAssigned(let partitions):
                logger.info("partitions assigned", metadata: ["partitions": "\(partitions.map(\.description))"])
            case .partitionsRevoked(let revocation):
                await handOver(revocation, consumer: consumer)
            }
        }
    }

    /// Applies one batch. False when it could not be made durable (shutdown while
    /// the dead-letter store was down); then nothing of it is committed.
    private func process(_ messages: [KafkaMessage]) async -> Bool {
        tracker.withLock { tracker in
            for message in messages { tracker.track(message.topicPartition, offset: message.offset) }
        }
        let batch = messages.map { message in
            IncomingEvent(
                source: .kafka(topic: message.topic, partition: message.partition, offset: message.offset),
                payload: message.value, format: configuration.format,
                headers: message.headers.map { ($0.key, $0.value) }, timestampMilliseconds: message.timestamp)
        }
        let result = await pipeline.process(batch) { [self] index in
            tracker.withLock { $0.complete(messages[index].topicPartition, offset: messages[index].offset) }
        }
        guard result.isDurable else { return false }
        processed.add(messages.count, ordering: .relaxed)
        tracker.withLock { tracker in
            for (index, message) in messages.enumerated() where !result.awaitingRedelete.contains(index) {
                tracker.complete(message.topicPartition, offset: message.offset)
            }
        }
        return true
    }

    private func commit(_ consumer: KafkaConsumer) async {
        let positions = tracker.withLock { $0.takeCommitPositions() }
        guard !positions.isEmpty else { return }
        do {
            try await consumer.commit(positions)
        } catch {
            // The next commit carries the same or later positions.
            logger.warning("offset commit failed; will retry", metadata: ["error": "\(error)"])
            tracker.withLock { tracker in
                for partition in positions.keys { tracker.resetCommitted(partition) }
            }
        }
    }

    /// Partitions are leaving: let their delayed redeletes finish (bounded by the
    /// drain timeout), commit what is finished, and hand them back.
    private func handOver(_ revocation: KafkaRevocation, consumer: KafkaConsumer) async {
        let partitions = revocation.partitions
        logger.info("partitions revoked", metadata: ["partitions": "\(partitions.map(\.description))", "lost": "\(revocation.isLost)"])
        if !revocation.isLost {
            let deadline = ContinuousClock.now + drainTimeout
            while ContinuousClock.now < deadline,
                  tracker.withLock({ tracker in partitions.contains { tracker.unfinishedCount($0) > 0 } }) {
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
