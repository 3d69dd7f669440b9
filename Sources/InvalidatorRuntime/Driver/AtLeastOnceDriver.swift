import Logging
import ServiceLifecycle
import Synchronization

/// Runs one source at least once: the loop every source shares.
///
/// - **Tracking.** Each event's position is tracked from the moment it is
///   fetched; a position is committed only up to the longest prefix of finished
///   events (applied, or durably dead-lettered, delayed redeletes and pattern-stage
///   work included). A batch that could not be made durable is never committed:
///   the loop stops.
/// - **Overlap.** While one batch is applied, the next is decoded and planned, so
///   both cores work; batches still apply one after another, in order.
/// - **Patterns.** Events with pattern operations (and those that must stay behind
///   them) go to the source's ``PatternStage``, which applies them in the background:
///   a long walk never holds up the batches after it (see ``PendingPatternWork``).
/// - **Commits** run on a timer, so work finished between batches (a redelete, a
///   dead-letter store coming back) is committed without new input.
/// - **Hand-over.** Revoked partitions are committed once their in-flight work is
///   finished (bounded by the drain timeout), then handed back.
/// - **Liveness.** Every wait for input is bounded (`LivenessMonitor.idleWait`),
///   so an idle loop still beats; a batch being applied beats for the loop.
/// - **Stop.** Graceful shutdown stops fetching, drains in-flight work, the pattern
///   stage and pending redeletes up to the drain timeout, commits what is finished, closes.
final class AtLeastOnceDriver<Adapter: SourceAdapter>: Sendable {
    let adapter: Adapter
    private let pipeline: EventPipeline
    private let redeletes: RedeleteScheduler
    private let patterns: PatternStage
    private let liveness: LivenessMonitor
    private let drainTimeout: Duration
    /// nil for a source with nothing to commit (pub/sub): no commit timer runs.
    private let commitInterval: Duration?
    private let logger: Logger
    /// Woken on every completion, for hand-over.
    private let tracker = Guarded(CompletionTracker<Adapter.Partition>())
    private let stop: StopSignal
    private let processed = Atomic<Int>(0)

    init(
        adapter: Adapter, pipeline: EventPipeline, liveness: LivenessMonitor, drainTimeout: Duration,
        commitInterval: Duration?, logger: Logger
    ) {
        self.adapter = adapter
        self.pipeline = pipeline
        let redeletes = RedeleteScheduler(executor: pipeline.executor)
        self.redeletes = redeletes
        let stop = StopSignal()
        self.stop = stop
        self.patterns = PatternStage(pipeline: pipeline, redeletes: redeletes, stop: stop)
        self.liveness = liveness
        self.drainTimeout = drainTimeout
        self.commitInterval = commitInterval
        self.logger = logger
    }

    /// Events processed since start (applied or dead-lettered).
    var processedEvents: Int { processed.load(ordering: .relaxed) }

    /// Events fetched and not yet finished.
    var inFlight: Int { tracker.read { $0.inFlight } }

    /// Runs until graceful shutdown or cancellation, the source's end, or a batch
    /// that cannot be made durable; then drains, commits and closes.
    func run() async throws {
        do {
            try await withTaskCancellationOrGracefulShutdownHandler {
                try await withThrowingTaskGroup(of: Void.self) { tasks in
                    tasks.addTask { await self.redeletes.run() }
                    if let commitInterval = self.commitInterval {
                        tasks.addTask {
                            // The commit timer.
                            while !self.stop.isSet {
                                await self.stop.pause(for: commitInterval)
                                await self.commit()
                                await self.adapter.afterCommitRound()
                            }
                        }
                    }
                    try await self.liveness.monitor(self.adapter.loopName) { heartbeat in
                        // The stage beats the loop's heartbeat: the loop's batches may wait on its walks.
                        tasks.addTask { await self.patterns.run(heartbeat: heartbeat) }
                        try await self.consume(heartbeat: heartbeat)
                    }
                    // Reading has ended: drain with the stage and the scheduler still running (the
                    // stage's events may schedule redeletes), then stop them and the timers.
                    self.stop.set()
                    let deadline = ContinuousClock.now + self.drainTimeout
                    let patternsDrained = await self.patterns.drain(until: deadline)
                    let drained = await self.redeletes.drain(until: deadline) && patternsDrained
                    // All end at once; awaited, so no commit of theirs overlaps the last one.
                    tasks.cancelAll()
                    try await tasks.waitForAll()
                    await self.finish(drained: drained)
                }
            } onCancelOrGracefulShutdown: {
                self.stop.set()
                self.adapter.interrupt()
            }
        } catch {
            logger.error("source failed", metadata: ["error": "\(error)"])
            await finish(drained: false)
            throw error
        }
    }

    /// Reads until stopped, until the source ends, or until a batch cannot be made durable.
    private func consume(heartbeat: Heartbeat) async throws {
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
                switch try await adapter.next(timeout: liveness.idleWait) {
                case .closed:
                    break reading
                case .idle:
                    guard try await finishApplying() else { return }
                case .batch(let batch):
                    let prepared = await prepare(batch)
                    guard try await finishApplying() else { return }
                    applying.addTask { await self.apply(prepared, batch, heartbeat: heartbeat) }
                    isApplying = true
                case .revoked(let partitions, let isLost, let complete):
                    guard try await finishApplying() else { return }
                    await handOver(partitions, isLost: isLost, heartbeat: heartbeat)
                    complete()
                }
            }
            guard try await finishApplying() else { return }
            if let last = await adapter.stopFetching(), !last.events.isEmpty {
                _ = await apply(await prepare(last), last, heartbeat: heartbeat)
            }
        }
    }

    private func prepare(_ batch: SourceBatch<Adapter.Partition>) async -> EventPipeline.PreparedBatch {
        tracker.withLock { tracker in
            for run in batch.runs {
                tracker.track(run.partition, offsets: batch.offsets[run.range])
            }
        }
        return await pipeline.prepare(batch.events)
    }

    /// Applies one prepared batch. False when it could not be made durable
    /// (shutdown while the dead-letter store was down); then nothing of it is committed.
    private func apply(
        _ prepared: EventPipeline.PreparedBatch, _ batch: SourceBatch<Adapter.Partition>, heartbeat: Heartbeat
    ) async -> Bool {
        let result = await pipeline.apply(prepared, heartbeat: heartbeat, redeletes: redeletes, patterns: patterns) { [self] index in
            // A redelete or a pattern-stage event finished: few, so the run is looked up rather than stored per event.
            guard let run = batch.runs.first(where: { $0.range.contains(index) }) else { return }
            tracker.withLock { $0.complete(run.partition, offset: batch.offsets[index]) }
        }
        guard result.isDurable else { return false }
        processed.add(batch.events.count, ordering: .relaxed)
        let awaiting = result.awaiting
        tracker.withLock { tracker in
            for run in batch.runs {
                tracker.complete(
                    run.partition, offsets: run.range.lazy.filter { awaiting.isEmpty || !awaiting.contains($0) }.map { batch.offsets[$0] })
            }
        }
        return true
    }

    private func commit() async {
        let positions = tracker.withLock { $0.takeCommitPositions() }
        guard !positions.isEmpty else { return }
        do {
            try await adapter.commit(positions)
        } catch {
            // The next round commits the same or later positions.
            logger.warning("commit failed; will retry", metadata: ["error": "\(error)"])
            tracker.withLock { tracker in
                for partition in positions.keys { tracker.resetCommitted(partition) }
            }
        }
    }

    /// Partitions are leaving: let the pattern stage finish, then their delayed
    /// redeletes (bounded by the drain timeout), commit what is finished, forget them.
    ///
    /// The stage is waited for in full, lost partitions too, as batches were before it
    /// existed: work of a partition that another worker may already own must not run
    /// after it (a walk deleting a version key that worker bumped since).
    private func handOver(_ partitions: [Adapter.Partition], isLost: Bool, heartbeat: Heartbeat) async {
        logger.info("partitions revoked", metadata: ["partitions": "\(partitions)", "lost": "\(isLost)"])
        heartbeat.beat(.handingOver)
        await patterns.drain(until: nil)
        if !isLost {
            let finished = await tracker.wait(
                until: { tracker in !partitions.contains { tracker.unfinishedCount($0) > 0 } },
                deadline: ContinuousClock.now + drainTimeout)
            if !finished {
                logger.warning("handing partitions over with unfinished work; it will be redelivered", metadata: [
                    "partitions": "\(partitions)",
                ])
            }
            await commit()
        }
        tracker.withLock { tracker in
            for partition in partitions { tracker.forget(partition) }
        }
    }

    /// After reading stopped and the stage and redeletes drained: commit what is finished and close.
    private func finish(drained: Bool) async {
        await commit()
        logger.info("source stopped", metadata: ["drained": "\(drained)", "unfinished": "\(inFlight)"])
        await adapter.close()
    }
}
