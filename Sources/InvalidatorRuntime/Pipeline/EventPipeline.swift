import Foundation
import InvalidatorCore
import InvalidatorRedis
import Logging

/// Decodes, plans and applies batches of events, and dead-letters whatever cannot
/// be applied. An event is finished when its operations are applied or its dead
/// letters are durably stored; only then may its source position be committed.
///
/// An event's `notify` and `webhook` work runs only after all its Redis operations
/// succeeded; when one of them is dead-lettered, the records carry that work and
/// `replay` runs it once they succeed.
package final class EventPipeline: Sendable {
    package let rules: RulesState
    package let executor: BatchExecutor
    /// nil when the config has no `webhooks:`.
    package let webhooks: (any WebhookDelivering)?
    package let deadLetters: any DeadLetterStore
    package let metrics: WorkerMetrics
    let logger: Logger
    let preparer: BatchPreparer
    /// Pause between attempts to reach an unavailable dead-letter store.
    let deadLetterRetryDelay: Duration

    package init(
        rules: RulesState, pools: PoolSet, deadLetters: any DeadLetterStore, workerID: String, logger: Logger,
        deadLetterRetryDelay: Duration = .milliseconds(500), metrics: WorkerMetrics = .disabled,
        webhooks: (any WebhookDelivering)? = nil
    ) {
        self.rules = rules
        self.metrics = metrics
        self.executor = BatchExecutor(pools: pools, metrics: metrics)
        self.webhooks = webhooks
        self.deadLetters = deadLetters
        self.preparer = BatchPreparer(workerID: workerID)
        self.logger = logger
        self.deadLetterRetryDelay = deadLetterRetryDelay
    }

    /// The result of a batch: which events are finished now, and which are still
    /// awaited: handed to the pattern stage, or waiting for a delayed redelete
    /// (reported through `onAwaitedFinished`).
    package struct BatchResult: Sendable {
        /// False when the batch could not be made durable (shutdown while the
        /// dead-letter store was down): nothing of it may be committed.
        package var isDurable: Bool
        /// Indexes of events that finish later.
        package var awaiting: Set<Int>
    }

    /// Decoded and planned events of a batch, ready to apply: the CPU-bound half
    /// of processing, which a source may run for the next batch while the
    /// previous one is still being applied.
    package struct PreparedBatch: Sendable {
        package let batch: [IncomingEvent]
        package let plans: [Plan]
        /// For each plan, the index of its event in `batch`.
        package let planEventIndexes: [Int]
        /// Events that cannot be applied at all (bad input, unresolvable templates).
        package let rejected: [DeadLetter]
    }

    /// Processes `batch` in order, once (for tests and one-off use: sources go
    /// through an ``AtLeastOnceDriver``). Delayed redeletes are not scheduled.
    package func process(_ batch: [IncomingEvent]) async -> BatchResult {
        await apply(await prepare(batch), heartbeat: nil, redeletes: nil)
    }

    /// Decodes and plans a batch with the rules in force now.
    ///
    /// Decoding and planning are the heaviest per-event work, and a source's loop
    /// runs them for the next batch while the previous one is applied: a large
    /// batch is split across one task per core so that loop is not held to one.
    package func prepare(_ batch: [IncomingEvent]) async -> PreparedBatch {
        let planner = rules.planner
        let now = RFC3339Clock.now()
        let chunkCount = min(Self.preparingTasks, batch.count / Self.minimumEventsPerTask)
        guard chunkCount > 1 else {
            return preparer.prepare(batch[...], in: batch, planner: planner, now: now)
        }
        let chunkSize = (batch.count + chunkCount - 1) / chunkCount
        let parts = await withTaskGroup(of: (Int, PreparedBatch).self) { group in
            for (part, start) in stride(from: 0, to: batch.count, by: chunkSize).enumerated() {
                group.addTask {
                    (part, self.preparer.prepare(batch[start..<min(start + chunkSize, batch.count)], in: batch, planner: planner, now: now))
                }
            }
            var parts = [PreparedBatch?](repeating: nil, count: chunkCount)
            for await (part, prepared) in group { parts[part] = prepared }
            return parts.compactMap { $0 }
        }
        return PreparedBatch(
            batch: batch, plans: parts.flatMap(\.plans), planEventIndexes: parts.flatMap(\.planEventIndexes),
            rejected: parts.flatMap(\.rejected))
    }

    /// One task per core, each with enough events to be worth a task.
    private static let preparingTasks = ProcessInfo.processInfo.activeProcessorCount
    private static let minimumEventsPerTask = 500

    /// Applies a prepared batch, dead-letters what failed, and schedules redeletes;
    /// with a pattern stage, hands it the events that go there (see ``PendingPatternWork``
    /// for which), after applying the others.
    ///
    /// - Parameter heartbeat: the calling loop's: beaten when the cache operations
    ///   start, at each step of a pattern or tag purge, and at each attempt to store
    ///   dead letters, so a loop waiting on a batch that keeps making progress or
    ///   attempts is alive.
    /// - Parameters:
    ///   - redeletes: runs the batch's delayed redeletes; nil schedules none.
    ///   - patterns: the source's pattern stage; nil applies every event here, in one go.
    ///   - onAwaitedFinished: called once per event index in `awaiting` when it finished.
    func apply(
        _ prepared: PreparedBatch, heartbeat: Heartbeat?, redeletes: RedeleteScheduler?, patterns: PatternStage? = nil,
        onAwaitedFinished: @escaping @Sendable (Int) -> Void = { _ in }
    ) async -> BatchResult {
        let count = prepared.batch.count
        metrics.inFlightChanged(by: count)
        let staged = patterns.map { Self.staged(prepared.plans, after: $0.pending) } ?? []
        let (now, eventIndexes) = prepared.excluding(staged.map(\.planIndex))
        let result = await applyNow(now, heartbeat: heartbeat, redeletes: redeletes) { onAwaitedFinished(eventIndexes?[$0] ?? $0) }
        guard result.isDurable else {
            metrics.inFlightChanged(by: -count)
            return result
        }
        var awaiting = eventIndexes.map { indexes in Set(result.awaiting.map { indexes[$0] }) } ?? result.awaiting
        for (planIndex, footprint) in staged {
            let eventIndex = prepared.planEventIndexes[planIndex]
            awaiting.insert(eventIndex)
            await patterns?.enqueue(
                PatternStage.Entry(
                    event: prepared.batch[eventIndex], plan: prepared.plans[planIndex], footprint: footprint,
                    finished: { onAwaitedFinished(eventIndex) }),
                heartbeat: heartbeat)
        }
        metrics.inFlightChanged(by: -(count - awaiting.count))
        return BatchResult(isDurable: true, awaiting: awaiting)
    }

    /// The plans that go to the pattern stage, in order, given what it has pending: each
    /// decided after the ones before it, as if they were already there.
    private static func staged(
        _ plans: [Plan], after pending: PendingPatternWork
    ) -> [(planIndex: Int, footprint: PendingPatternWork.Footprint)] {
        var pending = pending
        var staged: [(planIndex: Int, footprint: PendingPatternWork.Footprint)] = []
        for planIndex in plans.indices {
            // Most batches have no pattern and nothing pending: no footprint is built for them.
            guard !pending.pools.isEmpty || plans[planIndex].hasPatternOperation else { continue }
            let footprint = PendingPatternWork.Footprint(plans[planIndex])
            guard pending.mustQueue(footprint) else { continue }
            pending.add(footprint)
            staged.append((planIndex, footprint))
        }
        return staged
    }

    /// Applies a prepared batch in one go, dead-letters what failed, and schedules
    /// redeletes; `heartbeat` and `redeletes` as for ``apply(_:heartbeat:redeletes:patterns:onAwaitedFinished:)``.
    /// In-flight counting is the caller's, but for the events whose redeletes finish later.
    func applyNow(
        _ prepared: PreparedBatch, heartbeat: Heartbeat?, redeletes: RedeleteScheduler?,
        onRedeleteFinished: @escaping @Sendable (Int) -> Void
    ) async -> BatchResult {
        let (batch, plans, planEventIndexes) = (prepared.batch, prepared.plans, prepared.planEventIndexes)
        var records = prepared.rejected
        heartbeat?.beat(.applying)
        // A pattern or tag purge may scan for minutes: each page it scans is a beat
        // (inside the pattern stage, the stage's step counter is told too).
        let failures = await ExecutionProgress.reporting(to: { heartbeat?.beat(.applying) }) {
            await executor.execute(plans.map(\.pools))
        }
        // A walk given up by a stop past the drain timeout: nothing of the batch is finished
        // or dead-lettered, so all of it is redelivered.
        if failures.values.contains(where: { $0.contains { $0.error.code == .cancelled } }) {
            return BatchResult(isDurable: false, awaiting: [])
        }
        for planIndex in failures.keys.sorted() {
            let event = batch[planEventIndexes[planIndex]]
            let pending = plans[planIndex].hasSecondLayerWork ? SecondLayerWork(plans[planIndex]) : nil
            for failure in failures[planIndex]! {
                var record = preparer.deadLetter(event, failure: failure)
                record.pending = pending
                records.append(record)
            }
        }
        let secondLayer = await applySecondLayer(prepared, skipping: Set(failures.keys))
        records += secondLayer.records
        guard await store(records, heartbeat: heartbeat) else {
            return BatchResult(isDurable: false, awaiting: [])
        }
        metrics.recordOutcomes(of: prepared, failed: Set(failures.keys).union(secondLayer.failedPlans))

        var awaiting: Set<Int> = []
        for planIndex in plans.indices {
            guard let redeletes else { break }
            let pools = plans[planIndex].pools
            guard pools.contains(where: { !$0.redeletes.isEmpty }) else { continue }
            let eventIndex = planEventIndexes[planIndex]
            let groups = pools.flatMap { pool in pool.redeletes.map { (pool.pool, $0) } }
            awaiting.insert(eventIndex)
            let event = batch[eventIndex]
            await redeletes.schedule(groups, heartbeat: heartbeat) { [self] failed in
                // Runs on the scheduler's task, not on a monitored loop.
                let durable = await store(failed.map { preparer.deadLetter(event, failure: $0) }, heartbeat: nil)
                if durable {
                    metrics.inFlightChanged(by: -1)
                    onRedeleteFinished(eventIndex)
                }
            }
        }
        return BatchResult(isDurable: true, awaiting: awaiting)
    }

    /// Runs the `notify` and `webhook` work of the batch's events whose Redis
    /// operations all succeeded, notifications and webhooks side by side.
    /// - Returns: the records of what failed, and the indexes of their plans.
    private func applySecondLayer(_ prepared: PreparedBatch, skipping failed: Set<Int>) async -> (records: [DeadLetter], failedPlans: Set<Int>) {
        let ready = prepared.plans.indices.filter { !failed.contains($0) && prepared.plans[$0].hasSecondLayerWork }
        guard !ready.isEmpty else { return ([], []) }
        var items: [WebhookItem] = []
        var itemOwners: [Int] = []
        for planIndex in ready {
            items += prepared.plans[planIndex].webhooks
            itemOwners += repeatElement(planIndex, count: prepared.plans[planIndex].webhooks.count)
        }
        async let notificationFailures = executor.execute(ready.map { prepared.plans[$0].notifications })
        async let webhookFailures = webhooks.deliver(items)

        var records: [DeadLetter] = []
        var failedPlans: Set<Int> = []
        for (position, nodeFailures) in await notificationFailures.sorted(by: { $0.key < $1.key }) {
            let planIndex = ready[position]
            failedPlans.insert(planIndex)
            let event = prepared.batch[prepared.planEventIndexes[planIndex]]
            records += nodeFailures.map { preparer.deadLetter(event, failure: $0) }
        }
        for (planIndex, failures) in Dictionary(grouping: await webhookFailures, by: { itemOwners[$0.item] }).sorted(by: { $0.key < $1.key }) {
            failedPlans.insert(planIndex)
            let event = prepared.batch[prepared.planEventIndexes[planIndex]]
            records += preparer.deadLetters(event, webhookFailures: failures, items: items)
        }
        return (records, failedPlans)
    }

    /// Stores dead letters, retrying while the store is down or full, with a heartbeat
    /// at each attempt. Returns false only when cancelled (shutdown) before the store
    /// took them.
    ///
    /// A full store (``DeadLetterStoreFull``) is waited out like an outage, so nothing
    /// is committed past these records; the loop's `/healthz` line says it waits, with
    /// the stream's count and cap, and the store logs the episode once.
    func store(_ records: [DeadLetter], heartbeat: Heartbeat?) async -> Bool {
        guard !records.isEmpty else { return true }
        var failures = 0
        heartbeat?.beat(.storingDeadLetters)
        while true {
            do {
                try await deadLetters.write(records)
                for record in records {
                    logger.warning("event dead-lettered", metadata: [
                        "reason": "\(record.reason.rawValue)", "rule": "\(record.rule ?? "-")",
                        "pool": "\(record.pool ?? "-")", "node": "\(record.node ?? "-")",
                        "error": "\(record.errorMessage)", "source": "\(record.source)",
                    ])
                }
                return true
            } catch let full as DeadLetterStoreFull {
                heartbeat?.beat(.waitingForDeadLetterRoom, detail: "\(full.records) records, cap \(full.cap)")
            } catch {
                heartbeat?.beat(.storingDeadLetters)
                failures += 1
                if failures == 1 || failures % 20 == 0 {
                    logger.error("dead-letter store unavailable; holding commits until it is back", metadata: [
                        "error": "\(error)", "attempt": "\(failures)",
                    ])
                }
            }
            do {
                // Timer: the pause between attempts to reach the dead-letter store.
                try await Task.sleep(for: deadLetterRetryDelay)
            } catch {
                return false
            }
        }
    }
}

extension EventPipeline.PreparedBatch {
    /// The batch without the events of these plans, and for each event left, its index
    /// in this batch; nil indexes (the indexes are the same) when nothing is left out.
    func excluding(_ planIndexes: [Int]) -> (EventPipeline.PreparedBatch, eventIndexes: [Int]?) {
        guard !planIndexes.isEmpty else { return (self, nil) }
        let leftOut = Set(planIndexes.map { planEventIndexes[$0] })
        let eventIndexes = batch.indices.filter { !leftOut.contains($0) }
        var newIndex = [Int](repeating: -1, count: batch.count)
        for (index, eventIndex) in eventIndexes.enumerated() { newIndex[eventIndex] = index }
        let kept = plans.indices.filter { !leftOut.contains(planEventIndexes[$0]) }
        let subset = EventPipeline.PreparedBatch(
            batch: eventIndexes.map { batch[$0] }, plans: kept.map { plans[$0] },
            planEventIndexes: kept.map { newIndex[planEventIndexes[$0]] }, rejected: rejected)
        return (subset, eventIndexes)
    }
}

extension Plan {
    var hasPatternOperation: Bool {
        pools.contains { pool in
            pool.operations.contains { if case .deletePattern = $0.operation { true } else { false } }
        }
    }
}

enum RFC3339Clock {
    static func now() -> String {
        let milliseconds = Int64((Date().timeIntervalSince1970 * 1000).rounded())
        return RFC3339.format(millisecondsSinceEpoch: milliseconds)
    }
}
