#if canImport(Glibc)
import Glibc
#endif
import Dispatch
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
///   it had prefetched: throughput fell by a factor of three.) Once full, it sleeps
///   until the reader has taken messages, or until a stop.
///
/// Code under the lock only changes `State` and returns `Effects`: the readers to
/// resume, the librdkafka calls to make, the threads to wake. Its caller does them
/// once the lock is released.
final class ConsumerCore: Sendable {
    private struct State {
        /// Set once, before the poll thread starts.
        var client: KafkaClient?
        var assigned: Set<TopicPartition> = []
        var userPaused: Set<TopicPartition> = []
        var events: [KafkaConsumerEvent] = []
        var bufferedMessages = 0
        var parked: [TopicPartition: [KafkaMessage]] = [:]
        /// The reader waiting for an event, if any.
        var reader: Reader?
        /// `interruptWait()` found no timed wait to end: the next one ends at once.
        var interruptPending = false
        /// The poll thread sleeps on `bufferDrained` and must be signalled once.
        var pollThreadWaiting = false
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

    /// A parked `next()` or `nextEvent(waitingAtMost:)`. Whoever takes it out of
    /// `State.reader` under the lock resumes it: the one resume is decided there.
    private struct Reader {
        let id: UInt64
        let continuation: CheckedContinuation<ReadOutcome, Never>
        /// A `nextEvent(waitingAtMost:)`, which `interruptWait()` ends.
        let isTimed: Bool
    }

    /// How a read ended.
    enum ReadOutcome: Sendable {
        case event(KafkaConsumerEvent)
        case failed(KafkaError)
        case closed
        /// The timeout passed, the wait was interrupted, or the reading task was cancelled.
        case timedOut
    }

    /// What locked code decided; its caller does it after releasing the lock.
    private struct Effects {
        var reader: (continuation: CheckedContinuation<ReadOutcome, Never>, outcome: ReadOutcome)?
        /// The reader parked and waits at most until a deadline: start its timer.
        var startTimer = false
        /// Let the poll thread, sleeping on a full buffer, go on.
        var wakePollThread = false
        var revocationToRelease: KafkaRevocation?
        /// librdkafka calls, to be made in the order they were decided (`clientCallOrder`).
        var client: KafkaClient?
        var pause: [TopicPartition] = []
        var resume: [TopicPartition] = []

        var hasClientCalls: Bool { !pause.isEmpty || !resume.isEmpty }
    }

    private let state = Mutex(State())
    /// Held from deciding a pause or resume until librdkafka has been told, so
    /// librdkafka sees them in the order `State.userPaused` changed (a pause overtaken
    /// by the resume that clears it at a revoke would outlive the assignment).
    private let clientCallOrder = Mutex(())
    /// Signalled once for each time the poll thread sets `State.pollThreadWaiting`.
    private let bufferDrained = DispatchSemaphore(value: 0)
    private let pending = PollThreadBatch()
    private let stopRequested = Atomic(false)
    private let readerIDs = Atomic<UInt64>(0)
    /// The poll thread's CPU-time clock while it runs (`noClock` otherwise).
    private let pollThreadClock = Atomic<Int32>(ConsumerCore.noClock)
    private static let noClock: Int32 = .min
    private let maxBufferedMessages: Int
    /// A full buffer lets the poll thread go on once it holds no more than this: as
    /// soon as the reader has taken an event. (Waiting until half is taken idled the
    /// poll thread while it still had room, and the throughput test drained slower.)
    private let resumeBufferedMessages: Int
    private let maxBatchSize: Int
    private let revocationTimeout: Duration
    /// The sticky assignors keep per-member state that exists only after a first assignment.
    private let usesStickyAssignor: Bool
    private let logger: Logger

    init(configuration: KafkaConsumerConfiguration, logger: Logger) {
        self.maxBufferedMessages = max(1, configuration.maxBufferedMessages)
        self.resumeBufferedMessages = self.maxBufferedMessages - 1
        self.maxBatchSize = max(1, configuration.maxBatchSize)
        self.revocationTimeout = configuration.revocationTimeout
        self.usesStickyAssignor = configuration.librdkafkaProperties
            .last { $0.0 == "partition.assignment.strategy" }?.1.contains("sticky") ?? false
        self.logger = logger
    }

    func attach(_ client: KafkaClient) {
        state.withLock { $0.client = client }
    }

    // MARK: Effects

    /// Does what locked code decided, now that the lock is released.
    private func perform(_ effects: Effects) {
        assert(!effects.hasClientCalls, "client calls go through decideCallingClient")
        effects.reader.map { $0.continuation.resume(returning: $0.outcome) }
        effects.revocationToRelease?.complete()
        if effects.wakePollThread { bufferDrained.signal() }
    }

    /// Decides under the lock, then makes the client calls decided, in decision order.
    private func decideCallingClient(_ decide: (inout State) -> Effects) {
        var effects = clientCallOrder.withLock { _ in
            let effects = state.withLock { decide(&$0) }
            if let client = effects.client {
                client.pause(effects.pause)
                client.resume(effects.resume)
            }
            return effects
        }
        effects.pause = []
        effects.resume = []
        perform(effects)
    }

    /// Whether taking messages out of the buffer (or ending it) lets the waiting poll
    /// thread go on; if so, it no longer counts as waiting.
    private func pollThreadMayGoOn(_ state: inout State) -> Bool {
        guard state.pollThreadWaiting,
              state.finished || state.bufferedMessages <= resumeBufferedMessages else { return false }
        state.pollThreadWaiting = false
        return true
    }

    // MARK: Poll thread

    /// Polls until a stop is requested, then leaves the group and releases the handle.
    func runPollLoop(_ client: KafkaClient) {
        recordPollThreadClock()
        defer { pollThreadClock.store(Self.noClock, ordering: .releasing) }
        while !stopRequested.load(ordering: .acquiring) {
            // Backpressure: leave messages in librdkafka's own bounded queue while the
            // reader is behind. Heartbeats continue on librdkafka's threads.
            let bufferFull = state.withLock { state in
                guard !state.finished, state.bufferedMessages >= maxBufferedMessages else { return false }
                state.pollThreadWaiting = true
                return true
            }
            if bufferFull {
                bufferDrained.wait()
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
        let effects = state.withLock { state -> Effects in
            guard !state.finished else { return Effects() }
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
            guard !deliverable.isEmpty else { return Effects() }
            return enqueue(.messages(deliverable), &state)
        }
        perform(effects)
    }

    /// Runs inside librdkafka's rebalance callback, on the poll thread.
    func rebalance(_ change: RebalanceChange) {
        // Messages polled before the rebalance come before its event.
        deliver(pending.take())
        switch change {
        case .assigned(let partitions):
            let effects = state.withLock { state -> Effects in
                state.assigned.formUnion(partitions)
                state.everAssigned = true
                return state.finished ? Effects() : enqueue(.partitionsAssigned(partitions), &state)
            }
            perform(effects)
        case .revoked(let partitions, let lost):
            let (effects, revocation, paused) = state.withLock {
                state -> (Effects, KafkaRevocation?, [TopicPartition]) in
                let revoked = Set(partitions)
                let paused = Array(revoked.intersection(state.userPaused))
                state.assigned.subtract(revoked)
                state.userPaused.subtract(revoked)
                for partition in partitions { state.parked[partition] = nil }
                dropBuffered(of: revoked, &state)
                guard !state.finished else { return (Effects(), nil, paused) }
                let revocation = KafkaRevocation(partitions: partitions, isLost: lost)
                state.pendingRevocation = revocation
                return (enqueue(.partitionsRevoked(revocation), &state), revocation, paused)
            }
            perform(effects)
            if let revocation, !revocation.wait(timeout: revocationTimeout) {
                logger.warning(
                    "Kafka revocation not completed in time; revoking anyway",
                    metadata: ["partitions": "\(partitions)", "timeout": "\(revocationTimeout)"]
                )
            }
            decideCallingClient { state in
                state.pendingRevocation = nil
                // librdkafka's pause flag would outlive the assignment: clear it.
                return Effects(client: state.client, resume: paused)
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
        let effects = state.withLock { state -> Effects in
            guard !state.finished else { return Effects() }
            state.finished = true
            state.events = []
            state.bufferedMessages = 0
            var effects = Effects()
            if let reader = state.reader.take() {
                effects.reader = (reader.continuation, .failed(error))
            } else {
                state.failure = error
            }
            effects.wakePollThread = pollThreadMayGoOn(&state)
            return effects
        }
        stopRequested.store(true, ordering: .releasing)
        perform(effects)
    }

    // MARK: Reader

    /// The next event for `events`; nil once closed or when the reading task is cancelled.
    func next() async throws -> KafkaConsumerEvent? {
        switch await read(timeout: nil) {
        case .event(let event): return event
        case .failed(let error): throw error
        case .closed, .timedOut: return nil
        }
    }

    func nextEvent(waitingAtMost timeout: Duration) async throws -> KafkaConsumerWait {
        switch await read(timeout: timeout) {
        case .event(let event): return .event(event)
        case .failed(let error): throw error
        case .closed: return .closed
        case .timedOut: return .timedOut
        }
    }

    /// Ends a pending `nextEvent(waitingAtMost:)` with `.timedOut`; with none pending,
    /// the next one returns `.timedOut` at once.
    func interruptWait() {
        let effects = state.withLock { state -> Effects in
            var effects = Effects()
            if let reader = state.reader, reader.isTimed {
                state.reader = nil
                effects.reader = (reader.continuation, .timedOut)
            } else {
                state.interruptPending = true
            }
            return effects
        }
        perform(effects)
    }

    /// One read: with a `timeout`, a timed wait that `interruptWait()` can end too.
    private func read(timeout: Duration?) async -> ReadOutcome {
        let id = readerIDs.wrappingAdd(1, ordering: .relaxed).newValue
        let deadline = timeout.map { ContinuousClock.now + $0 }
        var timer: Task<Void, Never>?
        let outcome = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<ReadOutcome, Never>) in
                let effects = state.withLock { state in
                    startRead(Reader(id: id, continuation: continuation, isTimed: deadline != nil), timeout: timeout, &state)
                }
                perform(effects)
                if effects.startTimer, let deadline {
                    // Resumes the reader only if it is still this wait: an event handed over
                    // meanwhile took it out of `State.reader` first.
                    timer = Task { [self] in
                        do {
                            try await Task.sleep(until: deadline, clock: .continuous)
                        } catch {
                            return
                        }
                        endRead(id, with: .timedOut)
                    }
                }
            }
        } onCancel: {
            endRead(id, with: .timedOut)
        }
        timer?.cancel()
        return outcome
    }

    /// Answers a read from the buffer, or parks the reader.
    private func startRead(_ reader: Reader, timeout: Duration?, _ state: inout State) -> Effects {
        assert(state.reader == nil, "one reader at a time")
        var effects = Effects()
        func answer(_ outcome: ReadOutcome) -> Effects {
            effects.reader = (reader.continuation, outcome)
            return effects
        }
        // Once finished, nothing is buffered: the failure, then the end.
        if let failure = state.failure {
            state.failure = nil
            return answer(.failed(failure))
        }
        if state.finished { return answer(.closed) }
        if reader.isTimed, state.interruptPending {
            state.interruptPending = false
            return answer(.timedOut)
        }
        if !state.events.isEmpty {
            let event = state.events.removeFirst()
            if case .messages(let messages) = event {
                state.bufferedMessages -= messages.count
                effects.wakePollThread = pollThreadMayGoOn(&state)
            }
            return answer(.event(event))
        }
        if Task.isCancelled || timeout.map({ $0 <= .zero }) == true { return answer(.timedOut) }
        state.reader = reader
        effects.startTimer = reader.isTimed
        return effects
    }

    /// Resumes the reader with `outcome` if it is still read `id`'s.
    private func endRead(_ id: UInt64, with outcome: ReadOutcome) {
        let effects = state.withLock { state -> Effects in
            guard let reader = state.reader, reader.id == id else { return Effects() }
            state.reader = nil
            return Effects(reader: (reader.continuation, outcome))
        }
        perform(effects)
    }

    /// Hands `event` to the waiting reader, or buffers it.
    private func enqueue(_ event: KafkaConsumerEvent, _ state: inout State) -> Effects {
        if let reader = state.reader.take() {
            return Effects(reader: (reader.continuation, .event(event)))
        }
        state.events.append(event)
        if case .messages(let messages) = event { state.bufferedMessages += messages.count }
        return Effects()
    }

    // MARK: User calls

    var assignment: Set<TopicPartition> {
        state.withLock { $0.assigned }
    }

    func pause(_ partitions: [TopicPartition]) {
        decideCallingClient { state in
            let newlyPaused = Set(partitions).intersection(state.assigned).subtracting(state.userPaused)
            guard !newlyPaused.isEmpty else { return Effects() }
            state.userPaused.formUnion(newlyPaused)
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
            var effects = Effects(client: state.client, pause: Array(newlyPaused))
            effects.wakePollThread = pollThreadMayGoOn(&state)
            return effects
        }
    }

    func resume(_ partitions: [TopicPartition]) {
        decideCallingClient { state in
            let resumed = Set(partitions).intersection(state.userPaused)
            guard !resumed.isEmpty else { return Effects() }
            state.userPaused.subtract(resumed)
            // Parked messages go first; librdkafka fetches from after them.
            let parked = resumed.sorted().flatMap { state.parked.removeValue(forKey: $0) ?? [] }
            var effects = !parked.isEmpty && !state.finished ? enqueue(.messages(parked), &state) : Effects()
            effects.client = state.client
            effects.resume = Array(resumed)
            return effects
        }
    }

    /// Stops the poll loop and ends the events; a revoke in progress proceeds. Returns at once.
    func requestStop() {
        let (effects, client) = state.withLock { state -> (Effects, KafkaClient?) in
            state.finished = true
            state.events = []
            state.bufferedMessages = 0
            var effects = Effects(revocationToRelease: state.pendingRevocation)
            if let reader = state.reader.take() {
                effects.reader = (reader.continuation, .closed)
            }
            effects.wakePollThread = pollThreadMayGoOn(&state)
            return (effects, state.client)
        }
        stopRequested.store(true, ordering: .releasing)
        perform(effects)
        client?.wakeUp()
    }

    /// Waits until the poll thread has closed the consumer and released the handle.
    func waitUntilClosed() async {
        await withCheckedContinuation { continuation in
            let closed = state.withLock { state in
                if !state.closed { state.closeWaiters.append(continuation) }
                return state.closed
            }
            if closed { continuation.resume() }
        }
    }

    // MARK: Diagnostics

    var bufferedMessageCount: Int {
        state.withLock { $0.bufferedMessages }
    }

    private func recordPollThreadClock() {
        #if os(Linux)
        var clock = clockid_t()
        if pthread_getcpuclockid(pthread_self(), &clock) == 0 {
            pollThreadClock.store(clock, ordering: .releasing)
        }
        #endif
    }

    /// CPU time the poll thread has used so far; nil where unknown or once it has ended.
    var pollThreadCPUTime: Duration? {
        #if os(Linux)
        let clock = pollThreadClock.load(ordering: .acquiring)
        var time = timespec()
        guard clock != Self.noClock, clock_gettime(clock, &time) == 0 else { return nil }
        return .seconds(time.tv_sec) + .nanoseconds(time.tv_nsec)
        #else
        return nil
        #endif
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
