import Dispatch
import Synchronization

/// What a `KafkaConsumer` delivers, in order.
package enum KafkaConsumerEvent: Sendable {
    /// Messages in offset order per partition; a batch may mix partitions.
    case messages([KafkaMessage])
    /// Partitions added to this consumer's assignment. Messages from them follow.
    case partitionsAssigned([TopicPartition])
    /// Partitions being taken away. The revoke waits until `complete()` is called
    /// (or the configured revocation timeout passes); see `KafkaRevocation`.
    case partitionsRevoked(KafkaRevocation)
}

/// How `KafkaConsumer.nextEvent(waitingAtMost:)` ended.
package enum KafkaConsumerWait: Sendable {
    case event(KafkaConsumerEvent)
    /// No event came in time, or the wait was interrupted or cancelled.
    case timedOut
    /// The consumer is closed: no event will come.
    case closed
}

/// A revoke in progress, waiting for its consumer's user.
///
/// When it is delivered, no message of `partitions` is buffered any more and none
/// will be delivered later (until they are assigned again). The user should finish
/// or abandon the work it holds for these partitions, commit what is done (unless
/// `isLost`), then call `complete()`. Until then, or until the consumer's
/// `revocationTimeout` passes, the poll thread waits inside librdkafka's rebalance
/// callback: the partitions stay assigned, so commits for them are accepted, and no
/// other event is delivered.
package final class KafkaRevocation: Sendable {
    package let partitions: [TopicPartition]
    /// The partitions were lost rather than handed over (session timeout, fencing):
    /// another member may own them already, so committing them is pointless.
    package let isLost: Bool

    private let completed = Atomic(false)
    private let signal = DispatchSemaphore(value: 0)

    init(partitions: [TopicPartition], isLost: Bool) {
        self.partitions = partitions
        self.isLost = isLost
    }

    /// Lets the revoke proceed. Idempotent.
    package func complete() {
        if !completed.exchange(true, ordering: .acquiringAndReleasing) {
            signal.signal()
        }
    }

    /// Blocks the calling (poll) thread until `complete()` or `timeout`; true if completed.
    func wait(timeout: Duration) -> Bool {
        signal.wait(timeout: .now() + .milliseconds(Int(timeout.milliseconds))) == .success
    }
}

/// The events of a `KafkaConsumer`, for one reader at a time. Ends after `close()`,
/// or with a `KafkaError` when the consumer fails fatally. Cancelling the reading
/// task ends the iteration without closing the consumer.
package struct KafkaConsumerEvents: AsyncSequence, Sendable {
    package typealias Element = KafkaConsumerEvent

    /// Keeps the consumer open while its events are read.
    let consumer: KafkaConsumer

    package func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(consumer: consumer)
    }

    package struct AsyncIterator: AsyncIteratorProtocol {
        let consumer: KafkaConsumer

        package mutating func next() async throws -> KafkaConsumerEvent? {
            try await consumer.core.next()
        }
    }
}
