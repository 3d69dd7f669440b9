import Dispatch
import Foundation
import Logging

/// A Kafka consumer in a consumer group, with explicit offset commits.
///
/// A dedicated thread polls librdkafka; read what it delivers from `events`.
///
/// Rebalances (cooperative-sticky by default) arrive as events, in order with the
/// messages: `.partitionsAssigned` before the first message of a partition, and
/// `.partitionsRevoked` after the last one. A revoke waits for its
/// `KafkaRevocation.complete()` (see there), so in-flight work can be finished and
/// committed while the partitions are still this consumer's.
///
/// Commits: `commit` stores, for each partition, the offset of the next message to
/// read (`KafkaMessage.nextOffset` of the last message done). Nothing is committed
/// automatically. Commits run one at a time in call order, so a later commit is
/// never overtaken by an earlier one. While the consumer is (re)joining its group a
/// commit waits for the join to end (see `GroupJoinWatch`).
///
/// Closing: finish and commit in-flight work, then `close()`. Once `close()` is
/// called no event is delivered, a revoke still waiting for `complete()` proceeds,
/// and the revoke of the final leave is not waited for.
/// Dropping the last reference (including any events iterator) closes it too.
package final class KafkaConsumer: Sendable {
    let core: ConsumerCore
    private let client: KafkaClient
    private let groupJoin: GroupJoinWatch
    /// How long a commit waits for a group join to end before it is sent anyway. A join
    /// lasts until every member has rejoined, which a member handing partitions over
    /// delays by up to its revocation timeout: the same bound.
    private let joinWaitLimit: Duration
    /// Blocking librdkafka calls run here, off Swift's cooperative pool, in call order.
    private let blockingCalls = DispatchQueue(label: "kafka-consumer-commits")

    /// Creates the consumer, subscribes to the topics and starts polling. With no
    /// topics it does not join the group: it can still read the group's committed
    /// offsets (`committed`) without causing a rebalance.
    package init(configuration: KafkaConsumerConfiguration, logger: Logger) throws(KafkaError) {
        let core = ConsumerCore(configuration: configuration, logger: logger)
        let groupJoin = GroupJoinWatch()
        // The callbacks retain `core`, which retains the client: the cycle ends when
        // the poll thread destroys the handle and releases the callbacks.
        let client = try KafkaClient(
            kind: .consumer,
            properties: configuration.librdkafkaProperties,
            callbacks: ClientCallbacks(
                logger: logger,
                rebalance: { core.rebalance($0) },
                error: { core.report($0) },
                groupRequest: { groupJoin.record($0) }
            )
        )
        core.attach(client)
        do {
            if !configuration.topics.isEmpty {
                try client.subscribe(configuration.topics)
            }
        } catch {
            client.destroy()
            throw error
        }
        self.core = core
        self.client = client
        self.groupJoin = groupJoin
        self.joinWaitLimit = configuration.revocationTimeout
        let thread = Thread { core.runPollLoop(client) }
        thread.name = "kafka-consumer"
        thread.start()
    }

    deinit {
        core.requestStop()
    }

    /// Messages and rebalances, for one reader at a time.
    package var events: KafkaConsumerEvents {
        KafkaConsumerEvents(consumer: self)
    }

    /// The next event, waiting at most `timeout`: for a reading loop that must wake
    /// regularly (to beat a liveness heartbeat, to notice a stop). `.timedOut` when no
    /// event came in time, when `interruptWait()` was called, or when the calling task
    /// is cancelled (an event already buffered is still returned); `.closed` once the
    /// consumer is closed (after `close()`, or after a fatal error has been thrown).
    /// Throws a fatal consumer error as `events` does, once.
    ///
    /// An event is never lost to a timeout: the wait ends exactly once, with the event
    /// or without it, and an event that comes too late stays buffered for the next call.
    /// A timeout of zero or less takes a buffered event, if any, without waiting.
    /// Shares the single reader of `events`: do not use both at the same time.
    package func nextEvent(waitingAtMost timeout: Duration) async throws -> KafkaConsumerWait {
        try await core.nextEvent(waitingAtMost: timeout)
    }

    /// Ends a pending `nextEvent(waitingAtMost:)` now with `.timedOut` (used on
    /// shutdown). When none is pending, the next call returns `.timedOut` at once, so a
    /// wait about to begin is not missed. Does not end an `events` iteration.
    package func interruptWait() {
        core.interruptWait()
    }

    /// The value librdkafka applies for property `name` (e.g. `queued.min.messages`);
    /// nil for an unknown property or once the consumer is closed.
    package func librdkafkaSetting(_ name: String) -> String? {
        client.setting(name)
    }

    /// The partitions currently assigned to this consumer.
    package var assignment: Set<TopicPartition> {
        core.assignment
    }

    /// Commits, for each partition, the next offset to read, and returns once the group
    /// coordinator has stored them all. Throws if any partition's commit failed; a
    /// failed commit changes nothing and may be repeated (or superseded by a later one).
    package func commit(_ offsets: [TopicPartition: Int64]) async throws(KafkaError) {
        guard !offsets.isEmpty else { return }
        try await offThePool { [client, groupJoin, joinWaitLimit] () throws(KafkaError) in
            if !groupJoin.waitWhileJoining(atMost: joinWaitLimit) {
                client.logger.warning("Kafka group join still in progress; committing anyway", metadata: ["waited": "\(joinWaitLimit)"])
            }
            try client.commit(offsets)
        }
    }

    /// The group's committed offsets (next offset to read) for `partitions`;
    /// partitions with no committed offset are absent.
    package func committed(
        _ partitions: [TopicPartition], timeout: Duration = .seconds(10)
    ) async throws(KafkaError) -> [TopicPartition: Int64] {
        try await offThePool { [client] () throws(KafkaError) in
            try client.committed(partitions, timeoutMs: timeout.milliseconds)
        }
    }

    /// `group`'s committed offsets for `partitions`, read by a consumer that never
    /// joins the group (it subscribes to nothing), so its members are not rebalanced.
    package static func committed(
        by group: String, brokers: String, partitions: [TopicPartition], logger: Logger
    ) async throws -> [TopicPartition: Int64] {
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(brokers: brokers, group: group, topics: []), logger: logger)
        do {
            let offsets = try await consumer.committed(partitions)
            await consumer.close()
            return offsets
        } catch {
            await consumer.close()
            throw error
        }
    }

    /// Stops delivering messages of `partitions` until `resume`. Takes effect at once:
    /// their messages already buffered are held back, not delivered. Only assigned
    /// partitions can be paused, and a revoke forgets the pause.
    package func pause(_ partitions: [TopicPartition]) {
        core.pause(partitions)
    }

    /// Delivers `partitions` again, starting with the messages held back by `pause`.
    package func resume(_ partitions: [TopicPartition]) {
        core.resume(partitions)
    }

    /// The partition's low and high watermarks as last seen by the fetcher (no request
    /// is made); the high watermark minus the committed offset is the lag.
    package func cachedWatermarks(_ partition: TopicPartition) -> (low: Int64, high: Int64)? {
        client.cachedWatermarks(partition)
    }

    /// The partition's low and high watermarks, asked of the broker now.
    package func watermarks(
        _ partition: TopicPartition, timeout: Duration = .seconds(10)
    ) async throws(KafkaError) -> (low: Int64, high: Int64) {
        try await offThePool { [client] () throws(KafkaError) in
            try client.queryWatermarks(partition, timeoutMs: timeout.milliseconds)
        }
    }

    /// The partitions of `topic`, asked of the cluster now.
    package func partitions(of topic: String, timeout: Duration = .seconds(10)) async throws(KafkaError) -> [TopicPartition] {
        try await offThePool { [client] () throws(KafkaError) in
            try client.partitions(of: topic, timeoutMs: timeout.milliseconds)
        }
    }

    /// Leaves the group and releases the consumer; returns when that is done.
    /// Ends `events`. Idempotent.
    package func close() async {
        core.requestStop()
        await core.waitUntilClosed()
    }

    /// CPU time the poll thread has used so far (Linux; nil elsewhere and once it
    /// has ended). For tests: it should stay flat while the buffer is full.
    package var pollThreadCPUTime: Duration? {
        core.pollThreadCPUTime
    }

    /// Messages buffered for the reader now. For tests.
    package var bufferedMessageCount: Int {
        core.bufferedMessageCount
    }

    private func offThePool<R: Sendable>(
        _ body: @escaping @Sendable () throws(KafkaError) -> R
    ) async throws(KafkaError) -> R {
        try await withCheckedContinuation { continuation in
            blockingCalls.async {
                continuation.resume(returning: Result { () throws(KafkaError) in try body() })
            }
        }.get()
    }
}

extension Duration {
    /// Whole milliseconds, clamped to what librdkafka's `int` timeouts accept.
    var milliseconds: Int32 {
        let (seconds, attoseconds) = components
        let ms = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        return Int32(clamping: max(0, ms))
    }
}
