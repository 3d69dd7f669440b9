/// What a source does for the ``AtLeastOnceDriver``: fetch batches, commit
/// positions, and report revocations. Everything else — tracking which events
/// are finished, overlapping decode with apply, the commit timer, heartbeats,
/// delayed redeletes, hand-over, drain and stop — is the driver's.
protocol SourceAdapter: Sendable {
    /// Where positions live: a Kafka partition, a stream.
    associatedtype Partition: Hashable & Sendable

    /// The processing loop's name for liveness (`kafka`, `redis_pubsub`, ...).
    var loopName: String { get }

    /// The next input, waiting at most `timeout`; `.idle` when nothing came or
    /// after ``interrupt()``. A thrown error ends the source.
    func next(timeout: Duration) async throws -> SourceInput<Partition>

    /// Ends a pending ``next(timeout:)`` at once (shutdown).
    func interrupt()

    /// Commits `positions`: per partition, the position after its longest finished
    /// prefix. Throws when it could not; the driver offers the positions again.
    func commit(_ positions: [Partition: Int64]) async throws

    /// Called after each commit round of the commit timer (for lag figures).
    func afterCommitRound() async

    /// Reading has stopped: stop fetching. Returns events that were already on
    /// their way (pub/sub messages before the unsubscription), to be processed.
    func stopFetching() async -> SourceBatch<Partition>?

    /// Everything is committed that will be: release the source.
    func close() async
}

extension SourceAdapter {
    func afterCommitRound() async {}
    func stopFetching() async -> SourceBatch<Partition>? { nil }
    func close() async {}
}

enum SourceInput<Partition: Hashable & Sendable>: Sendable {
    case batch(SourceBatch<Partition>)
    /// Partitions leave this worker: their work is finished and committed (unless
    /// `isLost`: already reassigned, so nothing may be committed), then `complete` is called.
    case revoked(partitions: [Partition], isLost: Bool, complete: @Sendable () -> Void)
    /// Nothing within the timeout.
    case idle
    /// The source has ended.
    case closed
}

/// Events in arrival order with their positions: each partition's offsets ascend.
struct SourceBatch<Partition: Hashable & Sendable>: Sendable {
    var events: [IncomingEvent]
    var offsets: [Int64]
    /// Index ranges of `events` from one partition each, so positions are tracked
    /// per run of a partition's events rather than per event.
    var runs: [(partition: Partition, range: Range<Int>)]

    init(events: [IncomingEvent], offsets: [Int64], runs: [(partition: Partition, range: Range<Int>)]) {
        self.events = events
        self.offsets = offsets
        self.runs = runs
    }

    /// A batch whose runs are the stretches of equal `partition(i)`, which is asked
    /// once per event (on Kafka's hot path it builds a topic-partition value).
    init(events: [IncomingEvent], offsets: [Int64], partition: (Int) -> Partition) {
        var runs: [(partition: Partition, range: Range<Int>)] = []
        if !events.isEmpty {
            var start = 0
            var current = partition(0)
            for index in events.indices.dropFirst() {
                let next = partition(index)
                guard next != current else { continue }
                runs.append((current, start..<index))
                (start, current) = (index, next)
            }
            runs.append((current, start..<events.count))
        }
        self.init(events: events, offsets: offsets, runs: runs)
    }
}
