import InvalidatorKafka
import Logging
import Synchronization
import Testing

/// One mock cluster per test, so tests can run in parallel.
struct KafkaFixture {
    let cluster: KafkaMockCluster
    let logger: Logger

    init(brokers: Int32 = 1, topic: String, partitions: Int32) throws {
        var logger = Logger(label: "kafka-test")
        // Brokers going down on purpose log errors; keep the output for real failures.
        logger.logLevel = .critical
        self.logger = logger
        cluster = try KafkaMockCluster(brokers: brokers, logger: logger)
        try cluster.createTopic(topic, partitions: partitions)
    }

    func consumer(
        group: String, topics: [String], maxBufferedMessages: Int = 20_000, maxBatchSize: Int = 4_000,
        revocationTimeout: Duration = .seconds(10), maxBufferedBytes: Int? = nil, properties: [String: String] = [:]
    ) throws -> KafkaConsumer {
        try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                brokers: cluster.bootstrapServers,
                group: group,
                topics: topics,
                properties: [
                    // The mock does not end long polls early.
                    "fetch.wait.max.ms": "10",
                    // The mock waits up to the session timeout for members to rejoin a rebalance.
                    "session.timeout.ms": "6000",
                    "heartbeat.interval.ms": "300",
                ].merging(properties) { $1 },
                maxBufferedMessages: maxBufferedMessages,
                maxBatchSize: maxBatchSize,
                maxBufferedBytes: maxBufferedBytes,
                revocationTimeout: revocationTimeout
            ),
            logger: logger
        )
    }

    func producer() throws -> KafkaProducer {
        try KafkaProducer(
            configuration: KafkaProducerConfiguration(brokers: cluster.bootstrapServers, properties: ["linger.ms": "5"]),
            logger: logger
        )
    }

    /// Produces `perPartition` messages to each partition, with values "p<partition>-<index>".
    func produce(topic: String, partitions: Int32, perPartition: Int, startingAt first: Int = 0) async throws {
        let producer = try producer()
        for index in first..<(first + perPartition) {
            for partition in 0..<partitions {
                try await producer.send(KafkaProducerRecord(
                    topic: topic, partition: partition, value: Array("p\(partition)-\(index)".utf8)
                ))
            }
        }
        try await producer.flush()
        await producer.close()
    }
}

/// What a consumer delivered, recorded by a reader task.
final class EventLog: Sendable {
    private struct State {
        var messages: [KafkaMessage] = []
        var revoked: [[TopicPartition]] = []
        var lost: [[TopicPartition]] = []
    }
    private let state = Mutex(State())

    var messages: [KafkaMessage] { state.withLock { $0.messages } }
    var revoked: [[TopicPartition]] { state.withLock { $0.revoked } }
    /// The revocations that said the partitions were lost rather than handed over.
    var lost: [[TopicPartition]] { state.withLock { $0.lost } }

    /// Reads `consumer`'s events until it closes or the task is cancelled; completes every revocation.
    func record(_ consumer: KafkaConsumer) async throws {
        for try await event in consumer.events {
            switch event {
            case .messages(let batch): state.withLock { $0.messages += batch }
            case .partitionsAssigned: break
            case .partitionsRevoked(let revocation):
                state.withLock { state in
                    state.revoked.append(revocation.partitions)
                    if revocation.isLost { state.lost.append(revocation.partitions) }
                }
                revocation.complete()
            }
        }
    }
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
func eventually(timeout: Duration = .seconds(30), _ condition: () -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        guard ContinuousClock.now < deadline else { return false }
        try await Task.sleep(for: .milliseconds(20))
    }
    return true
}

/// Reads messages from `consumer` until `done` says enough (or `timeout` passes), completing revocations.
func readMessages(
    from consumer: KafkaConsumer, timeout: Duration = .seconds(30),
    until done: @escaping @Sendable ([KafkaMessage]) -> Bool
) async throws -> [KafkaMessage] {
    let log = EventLog()
    let reader = Task { try await log.record(consumer) }
    defer { reader.cancel() }
    _ = try await eventually(timeout: timeout) { done(log.messages) }
    reader.cancel()
    _ = await reader.result
    return log.messages
}

extension [KafkaMessage] {
    /// Offsets per partition, in delivery order.
    var offsetsByPartition: [Int32: [Int64]] {
        Dictionary(grouping: self, by: \.partition).mapValues { $0.map(\.offset) }
    }

    func count(in partition: Int32) -> Int {
        lazy.filter { $0.partition == partition }.count
    }
}
