#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization

/// The consumer's moving parts: the poll loop, the rebalance handling, and the
/// bounded buffer of events between the poll thread and the reader.
///
/// Invariants, all under `state`'s lock:
/// - a buffered or parked message belongs to an assigned partition;
/// - a parked message belongs to a partition the user paused; it is delivered,
///   before anything newer of its partition, when the user resumes;
/// - librdkafka fetches a partition iff it is assigned and not user-paused;
/// - the poll thread does not poll while the buffer is full. (Pausing partitions
///   for flow control would be simpler to reason about, but librdkafka 2.0 only
///   fetches again at its next once-a-second wakeup after a resume, and drops what
///   it had prefetched: throughput fell by a factor of three.)
final class ConsumerCore: Sendable {
    private struct State {
        /// Set once, before the poll thread starts.
        var client: KafkaClient?
        var assigned: Set<TopicPartition> = []
        var userPaused: Set<TopicPartition> = []
        var events: [KafkaConsumerEvent] = []
        var bufferedMessages = 0
        var parked: [TopicPartition: [KafkaMessage]] = [:]
        var reader: CheckedContinuation<KafkaConsumerEvent?, any Error>?
        /// A fatal error the reader has not seen yet.
        var failure: KafkaError?
        /// No more events: the consumer is closing or failed.
        var finished = false
        /// The revoke the poll thread is waiting for, if any.
        var pendingRevocation: KafkaRevocation?
        var closed = false
        /// Whether librdkafka ever gave this member partitions.
        var everAssigned = false
        var closeWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())
    private let pending = PollThreadBatch()
    private let stopRequested = Atomic(false)
    private let maxBufferedMessages: Int
    private let maxBatchSize: Int
    private let revocationTimeout: Duration
    /// The sticky assignors keep per-member state that exists only after a first assignment.
    private let usesStickyAssignor: Bool
    private let logger: Logger

    init(configuration: KafkaConsumerConfiguration, logger: Logger) {
        self.maxBufferedMessages = max(1, configuration.maxBufferedMessages)
        self.maxBatchSize = max(1, configuration.maxBatchSize)
        self.revocationTimeout = configuration.revocationTimeout
        self.usesStickyAssignor = configuration.librdkafkaProperties
            .last { $0.0 == "partition.assignment.strategy" }?.1.contains("sticky") ?? false
        self.logger = logger
    }

    func attach(_ client: KafkaClient) {
        state.withLock { $0.client = client }
    }

    // MARK: Poll thread

    /// Polls until a stop is requested, then leaves the group and releases the handle.
    func runPollLoop(_ client: KafkaClient) {
        while !stopRequested.load(ordering: .acquiring) {
            // Backpressure: leave messages in librdkafka's own bounded queue while the
            // reader is behind. Heartbeats continue on librdkafka's threads.
            if state.withLock({ $0.bufferedMessages >= maxBufferedMessages }) {
                usleep(500)
                continue
            }
            guard let first = client.poll(timeoutMs: 100) else { continue }
            take(first)
            // Drain what is already fetched, without waiting, into one batch.
            while pending.messages.count < maxBatchSize, let item = client.poll(timeoutMs: 0) {
                take(item)
            }
            deliver(pending.take())
        }
        client.closeConsumer()
        if usesStickyAssignor, !state.withLock({ $0.everAssigned }) {
            // librdkafka before 2.3 aborts the process when it destroys a sticky-assignor
            // member that never got an assignment (its assignor state is still NULL). Such
            // a consumer has left the group above; its handle is left alive rather than
            // destroyed, which costs one idle handle, typically at process exit.
            logger.debug("Kafka consumer closed before its first assignment; handle not destroyed")
        } else {
            client.destroy()
        }
        let waiters = state.withLock { state in
            state.closed = true
            state.client = nil
            defer { state.closeWaiters = [] }
            return state.closeWaiters
        }
        waiters.forEach { $0.resume() }
    }

    private func take(_ item: PolledItem) {
        switch item {
        case .message(let message):
            pending.messages.append(message)
        case .error(let error) where error.isFatal:
            fail(error)
        case .error(let error) where error.isPartitionEnd:
            // Only reported when `enable.partition.eof` is set: a notice, not a problem.
            break
        case .error(let error):
            logger.warning("Kafka consumer error", metadata: ["error": "\(error)", "retriable": "\(error.isRetriable)"])
        }
    }

    /// Hands polled messages to the buffer, or parks those of user-paused partitions.
    private func deliver(_ messages: [KafkaMessage]) {
        guard !messages.isEmpty else { return }
        state.withLock { state in
            guard !state.finished else { return }
            var deliverable: [KafkaMessage] = []
            deliverable.reserveCapacity(messages.count)
            // Messages come in runs of one partition: decide once per run.
            var current: (partition: TopicPartition, assigned: Bool, paused: Bool)?
            for message in messages {
                let partition = message.topicPartition
                if current?.partition != partition {
                    current = (partition, state.assigned.contains(partition), state.userPaused.contains(partition))
                }
                // A message of a partition revoked meanwhile belongs to its next owner.
                guard current!.assigned else { continue }
                if current!.paused {
                    state.parked[partition, default: []].append(message)
                } else {
                    deliverable.append(message)
                }
            }
            guard !deliverable.isEmpty else { return }
            enqueue(.messages(deliverable), &state)
        }
    }

    /// Runs inside librdkafka's rebalance callback, on the poll thread.
    func rebalance(_ change: RebalanceChange) {
        // Messages polled before the rebalance come before its event.
        deliver(pending.take())
        switch change {
        case .assigned(let partitions):
            state.withLock { state in
                state.assigned.formUnion(partitions)
                state.everAssigned = true
                if !state.finished { enqueue(.partitionsAssigned(partitions), &state) }
            }
        case .revoked(let partitions, let lost):
            let (revocation, paused) = state.withLock { state -> (KafkaRevocation?, [TopicPartition]) in
                let revoked = Set(partitions)
                let paused = Array(revoked.intersection(state.userPaused))
                state.assigned.subtract(revoked)
                state.userPaused.subtract(revoked)
                for partition in partitions { state.parked[partition] = nil }
                dropBuffered(of: revoked, &state)
                guard !state.finished else { return (nil, paused) }
                let revocation = KafkaRevocation(partitions: partitions, isLost: lost)
                state.pendingRevocation = revocation
                enqueue(.partitionsRevoked(revocation), &state)
                return (revocation, paused)
            }
            if let revocation, !revocation.wait(timeout: revocationTimeout) {
                logger.warning(
                    "Kafka revocation not completed in time; revoking anyway",
                    metadata: ["partitions": "\(partitions)", "timeout": "\(revocationTimeout)"]
                )
            }
            state.withLock { state in
                state.pendingRevocation = nil
                // librdkafka's pause flag would outlive the assignment: clear it.
                state.client?.resume(paused)
            }
        }
    }

    private func dropBuffered(of revoked: Set<TopicPartition>, _ state: inout State) {
        var dropped = 0
        state.events = state.events.compactMap { event in
            guard case .messages(let messages) = event else { return event }
            let kept = messages.filter { !revoked.contains($0.topicPartition) }
            dropped += messages.count - kept.count
            return kept.isEmpty ? nil : .messages(kept)
        }
        state.bufferedMessages -= dropped
    }

    /// Reports an error librdkafka raised outside of a request.
    func report(_ error: KafkaError) {
        if error.isFatal {
            fail(error)
        } else {
            logger.warning("Kafka consumer error", metadata: ["error": "\(error)", "retriable": "\(error.isRetriable)"])
        }
    }

    private func fail(_ error: KafkaError) {
        logger.error("Kafka consumer failed", metadata: ["error": "\(error)"])
        state.withLock { state in
            guard !state.finished else { return }
            state.finished = true
            state.events = []
            state.bufferedMessages = 0
            if let reader = state.reader {
                state.reader = nil
                reader.resume(throwing: error)
            } else {
                state.failure = error
            }
        }
        stopRequested.store(true, ordering: .releasing)
    }

    // MARK: Reader

    func next() async throws -> KafkaConsumerEvent? {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                state.withLock { state in
                    if let event = state.events.first {
                        state.events.removeFirst()
                        if case .messages(let messages) = event {
                            state.bufferedMessages -= messages.count
                        }
                        continuation.resume(returning: event)
                    } else if let failure = state.failure {
                        state.failure = nil
                        continuation.resume(throwing: failure)
                    } else if state.finished || Task.isCancelled {
                        continuation.resume(returning: nil)
                    } else {
                        state.reader = continuation
                    }
                }
            }
        } onCancel: {
            let reader = state.withLock { state in
                defer { state.reader = nil }
                return state.reader
            }
            reader?.resume(returning: nil)
        }
    }

    private func enqueue(_ event: KafkaConsumerEvent, _ state: inout State) {
        if let reader = state.reader {
            state.reader = nil
            reader.resume(returning: event)
        } else {
            state.events.append(event)
            if case .messages(let messages) = event { state.bufferedMessages += messages.count }
        }
    }

    // MARK: User calls

    var assignment: Set<TopicPartition> {
        state.withLock { $0.assigned }
    }

    func pause(_ partitions: [TopicPartition]) {
        state.withLock { state in
            let newlyPaused = Set(partitions).intersection(state.assigned).subtracting(state.userPaused)
            guard !newlyPaused.isEmpty else { return }
            state.userPaused.formUnion(newlyPaused)
            state.client?.pause(Array(newlyPaused))
            // Buffered messages of these partitions wait for resume, so pausing takes effect at once.
            var parkedCount = 0
            state.events = state.events.compactMap { event in
                guard case .messages(let messages) = event else { return event }
                var kept: [KafkaMessage] = []
                for message in messages {
                    if newlyPaused.contains(message.topicPartition) {
                        state.parked[message.topicPartition, default: []].append(message)
                        parkedCount += 1
                    } else {
                        kept.append(message)
                    }
                }
                return kept.isEmpty ? nil : .messages(kept)
            }
            state.bufferedMessages -= parkedCount
        }
    }

    func resume(_ partitions: [TopicPartition]) {
        state.withLock { state in
            let resumed = Set(partitions).intersection(state.userPaused)
            guard !resumed.isEmpty else { return }
            state.userPaused.subtract(resumed)
            // Parked messages go first; librdkafka fetches from after them.
            let parked = resumed.sorted().flatMap { state.parked.removeValue(forKey: $0) ?? [] }
            if !parked.isEmpty, !state.finished { enqueue(.messages(parked), &state) }
            state.client?.resume(Array(resumed))
        }
    }

    /// Stops the poll loop and ends the events; a revoke in progress proceeds. Returns at once.
    func requestStop() {
        let (reader, revocation) = state.withLock { state in
            state.finished = true
            state.events = []
            state.bufferedMessages = 0
            defer { state.reader = nil }
            return (state.reader, state.pendingRevocation)
        }
        reader?.resume(returning: nil)
        revocation?.complete()
        stopRequested.store(true, ordering: .releasing)
        state.withLock { $0.client }?.wakeUp()
    }

    /// Waits until the poll thread has closed the consumer and released the handle.
    func waitUntilClosed() async {
        await withCheckedContinuation { continuation in
            state.withLock { state in
                if state.closed {
                    continuation.resume()
                } else {
                    state.closeWaiters.append(continuation)
                }
            }
        }
    }
}

/// Messages polled in the current round, not yet handed to the buffer.
// @unchecked Sendable: touched only on the poll thread, by the poll loop and by the
// rebalance callback, which librdkafka runs inside rd_kafka_consumer_poll on that thread.
private final class PollThreadBatch: @unchecked Sendable {
    var messages: [KafkaMessage] = []

    func take() -> [KafkaMessage] {
        defer { messages = [] }
        return messages
    }
}
