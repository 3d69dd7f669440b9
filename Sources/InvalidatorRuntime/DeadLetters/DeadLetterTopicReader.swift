import Foundation
import InvalidatorCore
import InvalidatorKafka
import InvalidatorRedis
import Logging
import Synchronization

/// Reads and settles dead letters on a Kafka topic, for `replay`.
///
/// Kafka cannot delete one message, so a replay consumes the topic in its own
/// consumer group and settles a record by committing past it: once its work
/// succeeded, or once what must stay (the record updated after failing again,
/// or a record this run leaves alone) has been appended to the end of the topic
/// and acknowledged. A record is therefore never lost, and the group's
/// committed offsets mark what has been dealt with.
///
/// One replay at a time: a rebalance in the middle of a run could hand a
/// partition over between a record's work and its commit, and the next owner
/// would apply that record again. So a replay joins the group only while it
/// holds the topic's ``DeadLetterTopic/lockKey`` in Redis; a second replay is
/// refused with ``ReplayAlreadyRunning``. The group uses the eager `range`
/// assignor, which tells every member its (possibly empty) assignment.
final class DeadLetterTopicReader: Sendable {
    let topic: String
    private let consumer: KafkaConsumer
    private let store: KafkaDeadLetterStore
    private let waitingSince = Mutex<ContinuousClock.Instant?>(nil)
    private let timedOut = Atomic(false)

    init(_ settings: DeadLetterTopic, logger: Logger) throws {
        var consumerProperties = settings.properties
        consumerProperties["partition.assignment.strategy"] = "range"
        consumerProperties["auto.offset.reset"] = "earliest"
        self.consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                brokers: settings.brokers, group: settings.group, topics: [settings.topic], properties: consumerProperties),
            logger: logger)
        self.store = try KafkaDeadLetterStore(
            brokers: settings.brokers, topic: settings.topic, properties: settings.properties, logger: logger)
        self.topic = settings.topic
    }

    /// Messages and rebalances, in order; nil when the consumer ended. Throws
    /// ``DeadLetterTopicTimeout`` when `watchForStalls` gave up waiting.
    func nextEvent(_ iterator: inout KafkaConsumerEvents.AsyncIterator) async throws -> KafkaConsumerEvent? {
        waitingSince.withLock { $0 = .now }
        defer { waitingSince.withLock { $0 = nil } }
        let event = try await iterator.next()
        if event == nil, timedOut.load(ordering: .acquiring) {
            throw DeadLetterTopicTimeout(topic: topic)
        }
        return event
    }

    /// Closes the consumer when `nextEvent` has waited longer than `timeout` (the
    /// brokers are unreachable), which ends its wait. Runs until cancelled.
    func watchForStalls(timeout: Duration) async {
        while !Task.isCancelled {
            // Timer: the watchdog looks at the wait's age four times a second.
            try? await Task.sleep(for: .milliseconds(250))
            let stalled = waitingSince.withLock { since in since.map { ContinuousClock.now - $0 > timeout } ?? false }
            if stalled {
                timedOut.store(true, ordering: .releasing)
                await consumer.close()
                return
            }
        }
    }

    var events: KafkaConsumerEvents { consumer.events }

    /// Where this run starts reading `partition` (the group's committed offset, or
    /// the oldest message kept) and where it stops (the end of the partition now:
    /// records appended during the run are left for the next one).
    func bounds(of partition: TopicPartition, timeout: Duration) async throws(KafkaError) -> (start: Int64, end: Int64) {
        let (low, high) = try await consumer.watermarks(partition, timeout: timeout)
        let committed = try await consumer.committed([partition], timeout: timeout)[partition]
        return (max(committed ?? low, low), high)
    }

    /// Records no replay of this group has dealt with yet, across the topic.
    func remaining(timeout: Duration) async throws(KafkaError) -> Int {
        let partitions = try await consumer.partitions(of: topic, timeout: timeout)
        let committed = try await consumer.committed(partitions, timeout: timeout)
        var total: Int64 = 0
        for partition in partitions {
            let (low, high) = try await consumer.watermarks(partition, timeout: timeout)
            // Watermarks come from the broker: a negative or overflowing difference counts as none or as many.
            let (unsettled, overflow) = high.subtractingReportingOverflow(max(committed[partition] ?? low, low))
            total = total.addingSaturating(overflow ? .max : max(unsettled, 0))
        }
        return Int(total)
    }

    /// Marks `message` dealt with. A commit refused while the group rebalances
    /// is tried again: the partition is still this replay's until it hands it over.
    func settle(_ message: KafkaMessage) async throws(KafkaError) {
        var attempt = 0
        while true {
            do {
                try await consumer.commit([message.topicPartition: message.nextOffset])
                return
            } catch where error.isRetriable && attempt < 50 {
                attempt += 1
                // Timer: the pause between commit attempts while the group rebalances.
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    /// Replaces `message` by `records`: appends them, then settles the message.
    func replace(_ message: KafkaMessage, with records: [DeadLetter]) async throws(KafkaError) {
        try await store.append(records)
        try await settle(message)
    }

    /// Moves `message` unchanged to the end of the topic, for a later replay.
    func keep(_ message: KafkaMessage) async throws(KafkaError) {
        try await store.append(copyOf: message)
        try await settle(message)
    }

    func close() async {
        await consumer.close()
        await store.close()
    }

    /// A message of the topic as a replay entry (id `topic/partition@offset`).
    static func entry(_ message: KafkaMessage) -> StoredDeadLetter {
        var fields: [String: String] = [:]
        for header in message.headers where header.key.hasPrefix(KafkaDeadLetterStore.headerPrefix) {
            fields[String(header.key.dropFirst(KafkaDeadLetterStore.headerPrefix.count))] =
                header.value.map { String(decoding: $0, as: UTF8.self) }
        }
        var entry = StoredDeadLetter(
            id: "\(message.topic)/\(message.partition)@\(message.offset)", record: nil, decodingError: nil, fields: fields)
        do {
            let record = try DeadLetter(jsonText: String(decoding: message.value ?? [], as: UTF8.self))
            entry.record = record
            entry.writtenAtMilliseconds = RFC3339.millisecondsSinceEpoch(record.lastFailedAt)
        } catch {
            entry.decodingError = "\(error)"
            entry.writtenAtMilliseconds = message.timestamp
        }
        return entry
    }
}

/// Where a Kafka dead-letter store is and how replays coordinate on it.
struct DeadLetterTopic: Sendable {
    var brokers: String
    var topic: String
    var properties: [String: String]
    /// The consumer group of replays, next to the worker's.
    var group: String
    /// The pool holding the replay lock.
    var lockPool: RedisPool

    var lockKey: String { "invalidator:replay-lock:kafka:\(topic)" }
}

/// Another replay of the same dead-letter topic is running.
package struct ReplayAlreadyRunning: Error, CustomStringConvertible {
    package var topic: String
    package var description: String {
        "another replay of dead-letter topic '\(topic)' is running; run one at a time (try again when it ends)"
    }
}

/// The dead-letter topic did not answer in time.
package struct DeadLetterTopicTimeout: Error, CustomStringConvertible {
    package var topic: String
    package var description: String { "dead-letter topic '\(topic)': no answer from the brokers in time" }
}
