import InvalidatorCore
import InvalidatorKafka
import Logging
import ServiceLifecycle
import Synchronization

/// Consumes change events from Kafka, at least once, through an ``AtLeastOnceDriver``.
///
/// Batches are processed in arrival order, so events of one partition are applied
/// in order on every node. A partition's offset is committed only up to the longest
/// prefix of events that are finished (applied, or durably dead-lettered, including
/// delayed redeletes); a revoked partition is committed before it is handed back.
package final class KafkaEventSource: Service, Sendable {
    package let configuration: KafkaSourceConfiguration
    private let pipeline: EventPipeline
    private let drainTimeout: Duration
    private let commitInterval: Duration
    private let metrics: WorkerMetrics
    private let liveness: LivenessMonitor
    private let logger: Logger
    private let driver = Mutex<AtLeastOnceDriver<KafkaAdapter>?>(nil)

    package init(
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

    /// True once the consumer is open and subscribed to its topics; partitions may
    /// still be on their way (a group forms or rebalances in seconds).
    package var isSubscribed: Bool { driver.withLock { $0?.adapter.isOpen ?? false } }

    /// Events processed since start (applied or dead-lettered).
    package var processedEvents: Int { driver.withLock { $0?.processedEvents ?? 0 } }

    /// Events fetched and not yet finished.
    package var inFlight: Int { driver.withLock { $0?.inFlight ?? 0 } }

    package func run() async throws {
        let consumer = try KafkaConsumer(configuration: Self.consumerConfiguration(configuration), logger: logger)
        let adapter = KafkaAdapter(consumer: consumer, decoder: configuration.decoder, metrics: metrics, logger: logger)
        let driver = AtLeastOnceDriver(
            adapter: adapter, pipeline: pipeline, liveness: liveness, drainTimeout: drainTimeout,
            commitInterval: commitInterval, logger: logger)
        self.driver.withLock { $0 = driver }
        var metadata: Logger.Metadata = ["topics": "\(configuration.topics)", "group": "\(configuration.group)"]
        if let instance = configuration.groupInstanceID { metadata["group_instance_id"] = "\(instance)" }
        logger.info("consuming", metadata: metadata)
        try await driver.run()
    }
}

extension KafkaEventSource {
    /// The consumer `sources.kafka` describes.
    package static func consumerConfiguration(_ configuration: KafkaSourceConfiguration) -> KafkaConsumerConfiguration {
        KafkaConsumerConfiguration(
            brokers: configuration.brokers, group: configuration.group,
            groupInstanceID: configuration.groupInstanceID, topics: configuration.topics,
            properties: configuration.properties, maxBufferedBytes: configuration.maxBufferedBytes)
    }
}

/// The Kafka consumer as the driver sees it: partitions, offsets, commits, revocations.
final class KafkaAdapter: SourceAdapter {
    let consumer: KafkaConsumer
    let decoder: EventDecoder
    let metrics: WorkerMetrics
    let logger: Logger
    private let open = Atomic<Bool>(true)
    /// Per assigned partition, the committed position (next offset to read) behind
    /// `invalidator_consumer_lag`; nil while unknown (no committed offset yet).
    private let lagPositions = Mutex<[TopicPartition: Int64?]>([:])

    init(consumer: KafkaConsumer, decoder: EventDecoder, metrics: WorkerMetrics, logger: Logger) {
        self.consumer = consumer
        self.decoder = decoder
        self.metrics = metrics
        self.logger = logger
    }

    var loopName: String { "kafka" }

    var isOpen: Bool { open.load(ordering: .relaxed) }

    func next(timeout: Duration) async throws -> SourceInput<TopicPartition> {
        let deadline = ContinuousClock.now + timeout
        while true {
            switch try await consumer.nextEvent(waitingAtMost: max(deadline - ContinuousClock.now, .zero)) {
            case .closed:
                return .closed
            case .timedOut:
                return .idle
            case .event(.messages(let messages)):
                return .batch(batch(of: messages))
            case .event(.partitionsAssigned(let partitions)):
                logger.info("partitions assigned", metadata: ["partitions": "\(partitions.map(\.description))"])
            case .event(.partitionsRevoked(let revocation)):
                return .revoked(partitions: revocation.partitions, isLost: revocation.isLost, complete: revocation.complete)
            }
        }
    }

    private func batch(of messages: [KafkaMessage]) -> SourceBatch<TopicPartition> {
        SourceBatch(
            events: messages.map { message in
                IncomingEvent(
                    source: .kafka(topic: message.topic, partition: message.partition, offset: message.offset),
                    payload: message.value, decoder: decoder,
                    headers: message.headers.map { ($0.key, $0.value) }, timestampMilliseconds: message.timestamp)
            },
            offsets: messages.map(\.offset),
            partition: { messages[$0].topicPartition })
    }

    func interrupt() {
        consumer.interruptWait()
    }

    func commit(_ positions: [TopicPartition: Int64]) async throws {
        try await consumer.commit(positions)
        lagPositions.withLock { known in
            for (partition, position) in positions where known[partition] != nil { known[partition] = position }
        }
    }

    /// Sets `invalidator_consumer_lag` for each assigned partition: the high
    /// watermark last seen by the fetcher minus the committed position. A newly
    /// assigned partition's committed offset is read from the group once; one with
    /// none yet counts from its low watermark.
    func afterCommitRound() async {
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

    /// Leaves the group.
    func close() async {
        await consumer.close()
        open.store(false, ordering: .relaxed)
    }
}
