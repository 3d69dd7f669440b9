import Foundation
import InvalidatorCore
import InvalidatorRedis
import Logging

/// Decodes, plans and applies batches of events, and dead-letters whatever cannot
/// be applied. An event is finished when its operations are applied or its dead
/// letters are durably stored; only then may its source position be committed.
public final class EventPipeline: Sendable {
    public let rules: RulesState
    public let executor: BatchExecutor
    public let deadLetters: any DeadLetterStore
    public let redeletes: RedeleteScheduler
    public let metrics: WorkerMetrics
    let logger: Logger
    let workerID: String
    /// Pause between attempts to reach an unavailable dead-letter store.
    let deadLetterRetryDelay: Duration

    public init(
        rules: RulesState, pools: PoolSet, deadLetters: any DeadLetterStore, workerID: String, logger: Logger,
        deadLetterRetryDelay: Duration = .milliseconds(500), metrics: WorkerMetrics = .disabled
    ) {
        self.rules = rules
        self.metrics = metrics
        self.executor = BatchExecutor(pools: pools, metrics: metrics)
        self.deadLetters = deadLetters
        self.workerID = workerID
        self.logger = logger
        self.deadLetterRetryDelay = deadLetterRetryDelay
        self.redeletes = RedeleteScheduler(executor: executor)
    }

    /// The result of a batch: which events are finished now, and which still
    /// wait for a delayed redelete (reported through `onRedeleteFinished`).
    public struct BatchResult: Sendable {
        /// False when the batch could not be made durable (shutdown while the
        /// dead-letter store was down): nothing of it may be committed.
        public var isDurable: Bool
        /// Indexes of events with redeletes still scheduled.
        public var awaitingRedelete: Set<Int>
    }

    /// Decoded and planned events of a batch, ready to apply: the CPU-bound half
    /// of processing, which a source may run for the next batch while the
    /// previous one is still being applied.
    public struct PreparedBatch: Sendable {
        let batch: [IncomingEvent]
        let plans: [Plan]
        /// For each plan, the index of its event in `batch`.
        let planEventIndexes: [Int]
        /// Events that cannot be applied at all (bad input, unresolvable templates).
        let rejected: [DeadLetter]
    }

    /// Processes `batch` in order. Operations of one event never run before those of an earlier event on the same node.
    ///
    /// - Parameters:
    ///   - heartbeat: the calling loop's, beaten as the batch makes progress (see ``apply(_:heartbeat:onRedeleteFinished:)``).
    ///   - onRedeleteFinished: called once per event index in `awaitingRedelete` when its redeletes ran.
    public func process(
        _ batch: [IncomingEvent], heartbeat: Heartbeat? = nil, onRedeleteFinished: @escaping @Sendable (Int) -> Void = { _ in }
    ) async -> BatchResult {
        await apply(await prepare(batch), heartbeat: heartbeat, onRedeleteFinished: onRedeleteFinished)
    }

    /// Decodes and plans a batch with the rules in force now.
    ///
    /// Decoding and planning are the heaviest per-event work, and a source's loop
    /// runs them for the next batch while the previous one is applied: a large
    /// batch is split across one task per core so that loop is not held to one.
    public func prepare(_ batch: [IncomingEvent]) async -> PreparedBatch {
        let planner = rules.planner
        let now = RFC3339Clock.now()
        let chunkCount = min(Self.preparingTasks, batch.count / Self.minimumEventsPerTask)
        guard chunkCount > 1 else {
            return prepare(batch[...], in: batch, planner: planner, now: now)
        }
        let chunkSize = (batch.count + chunkCount - 1) / chunkCount
        let parts = await withTaskGroup(of: (Int, PreparedBatch).self) { group in
            for (part, start) in stride(from: 0, to: batch.count, by: chunkSize).enumerated() {
                group.addTask {
                    (part, self.prepare(batch[start..<min(start + chunkSize, batch.count)], in: batch, planner: planner, now: now))
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

    /// Prepares `events`, a slice of `batch`; event indexes are positions in `batch`.
    private func prepare(_ events: ArraySlice<IncomingEvent>, in batch: [IncomingEvent], planner: Planner, now: String) -> PreparedBatch {
        var plans: [Plan] = []
        var planEventIndexes: [Int] = []
        var records: [DeadLetter] = []
        plans.reserveCapacity(events.count)
        planEventIndexes.reserveCapacity(events.count)
        for index in events.indices {
            guard let payload = events[index].payload else { continue }
            do {
                let decoded = try decode(events[index], payload: payload)
                let plan = planner.plan(decoded)
                if let rejection = plan.rejection {
                    records.append(deadLetter(events[index], rejection: rejection, at: now))
                } else if !plan.pools.isEmpty {
                    plans.append(plan)
                    planEventIndexes.append(index)
                }
            } catch {
                records.append(deadLetter(
                    events[index], reason: error.reason == .invalidJSON ? .invalidJSON : .schemaViolation,
                    errorClass: error.reason.rawValue, errorMessage: error.message, at: now))
            }
        }
        return PreparedBatch(batch: batch, plans: plans, planEventIndexes: planEventIndexes, rejected: records)
    }

    /// Applies a prepared batch, dead-letters what failed, and schedules redeletes.
    ///
    /// - Parameter heartbeat: the calling loop's: beaten when the cache operations
    ///   start and at each attempt to store dead letters, so a loop waiting on a batch
    ///   that keeps making attempts is alive.
    public func apply(
        _ prepared: PreparedBatch, heartbeat: Heartbeat? = nil, onRedeleteFinished: @escaping @Sendable (Int) -> Void = { _ in }
    ) async -> BatchResult {
        let (batch, plans, planEventIndexes) = (prepared.batch, prepared.plans, prepared.planEventIndexes)
        var records = prepared.rejected
        metrics.inFlightChanged(by: batch.count)
        heartbeat?.beat(.applying)
        let failures = await executor.execute(plans.map(\.pools))
        for planIndex in failures.keys.sorted() {
            let event = batch[planEventIndexes[planIndex]]
            for failure in failures[planIndex]! {
                records.append(deadLetter(event, failure: failure))
            }
        }
        guard await store(records, heartbeat: heartbeat) else {
            metrics.inFlightChanged(by: -batch.count)
            return BatchResult(isDurable: false, awaitingRedelete: [])
        }
        recordOutcomes(prepared, failed: Set(failures.keys))

        var awaiting: Set<Int> = []
        for planIndex in plans.indices {
            let pools = plans[planIndex].pools
            guard pools.contains(where: { !$0.redeletes.isEmpty }) else { continue }
            let eventIndex = planEventIndexes[planIndex]
            let groups = pools.flatMap { pool in pool.redeletes.map { (pool.pool, $0) } }
            awaiting.insert(eventIndex)
            let event = batch[eventIndex]
            redeletes.schedule(groups, event: event) { [self] failed in
                // A delayed redelete runs on a task of its own, not on a monitored loop.
                let durable = await store(failed.map { deadLetter(event, failure: $0) }, heartbeat: nil)
                if durable {
                    metrics.inFlightChanged(by: -1)
                    onRedeleteFinished(eventIndex)
                }
            }
        }
        metrics.inFlightChanged(by: -(batch.count - awaiting.count))
        return BatchResult(isDurable: true, awaitingRedelete: awaiting)
    }

    /// Counts a durable batch's events by result (per source: events neither
    /// planned nor rejected were skipped) and records the latency of those applied.
    /// - Parameter failed: indexes of plans with operations dead-lettered.
    private func recordOutcomes(_ prepared: PreparedBatch, failed: Set<Int>) {
        var counts = OutcomeCounts()
        for event in prepared.batch { counts[event.source.metricLabel].skipped += 1 }
        let nowSeconds = Date().timeIntervalSince1970
        // Indexes rather than elements: a plan or an event copied out of its array costs a retain per field.
        for planIndex in prepared.plans.indices {
            let eventIndex = prepared.planEventIndexes[planIndex]
            let label = prepared.batch[eventIndex].source.metricLabel
            counts[label].skipped -= 1
            if failed.contains(planIndex) {
                counts[label].deadLettered += 1
            } else {
                counts[label].applied += 1
                let origin = prepared.plans[planIndex].event.occurredAt.flatMap(RFC3339Parser.secondsSinceEpoch)
                    ?? prepared.batch[eventIndex].timestampMilliseconds.map { Double($0) / 1000 }
                if let origin { metrics.latency(seconds: nowSeconds - origin) }
            }
        }
        for record in prepared.rejected {
            let label = record.source.metricLabel
            counts[label].deadLettered += 1
            counts[label].skipped -= 1
        }
        for (source, count) in counts.bySource {
            metrics.events(source: source, result: .applied, count: count.applied)
            metrics.events(source: source, result: .deadLettered, count: count.deadLettered)
            metrics.events(source: source, result: .skipped, count: count.skipped)
        }
    }

    /// Event counts per source label. A batch comes from one source, so a short
    /// list searched linearly beats hashing the label for every event.
    private struct OutcomeCounts {
        struct Count {
            var applied = 0
            var deadLettered = 0
            var skipped = 0
        }

        var bySource: [(label: String, count: Count)] = []

        subscript(label: String) -> Count {
            get { bySource.first { $0.label == label }?.count ?? Count() }
            set {
                if let index = bySource.firstIndex(where: { $0.label == label }) {
                    bySource[index].count = newValue
                } else {
                    bySource.append((label, newValue))
                }
            }
        }
    }

    private func decode(_ event: IncomingEvent, payload: [UInt8]) throws(EventDecodingError) -> ChangeEvent {
        let decoder = EventDecoder(format: event.format)
        if let attributes = event.cloudEventAttributes, event.format == .auto || event.format == .cloudevents {
            return try decoder.decodeCloudEventBinary(attributes: attributes, data: payload)
        }
        return try decoder.decode(payload)
    }

    /// The record for one node's failed operations of one event.
    private func deadLetter(_ event: IncomingEvent, failure: NodeFailure) -> DeadLetter {
        deadLetter(
            event, reason: .operationFailed, errorClass: failure.error.code.rawValue, errorMessage: failure.error.message,
            rule: failure.operations.first?.rule, pool: failure.pool, node: failure.node,
            operations: failure.operations, attempts: failure.attempts, at: RFC3339Clock.now())
    }

    private func deadLetter(_ event: IncomingEvent, rejection: PlanRejection, at time: String) -> DeadLetter {
        deadLetter(
            event, reason: rejection.reason == .unresolvedPlaceholder ? .unresolvedPlaceholder : .invalidKey,
            errorClass: rejection.reason.rawValue, errorMessage: "template '\(rejection.template)': \(rejection.message)",
            rule: rejection.rule, at: time)
    }

    /// Every record of an event carries the message headers its decoding needs,
    /// so `replay --reprocess` can read a binary-mode CloudEvent again.
    private func deadLetter(
        _ event: IncomingEvent, reason: DeadLetter.Reason, errorClass: String, errorMessage: String,
        rule: String? = nil, pool: String? = nil, node: String? = nil, operations: [PlannedOperation] = [],
        attempts: Int = 1, at time: String
    ) -> DeadLetter {
        var record = DeadLetter(
            event: event.payload ?? [], source: event.source, reason: reason, errorClass: errorClass, errorMessage: errorMessage,
            rule: rule, pool: pool, node: node, operations: operations, attempts: attempts, failedAt: time, worker: workerID)
        record.headers = event.cloudEventHeaders
        return record
    }

    /// Stores dead letters, retrying while the store is down, with a heartbeat at each
    /// attempt. Returns false only when cancelled (shutdown) before the store came back.
    func store(_ records: [DeadLetter], heartbeat: Heartbeat?) async -> Bool {
        guard !records.isEmpty else { return true }
        var attempt = 0
        while true {
            heartbeat?.beat(.storingDeadLetters)
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
            } catch {
                attempt += 1
                if attempt == 1 || attempt % 20 == 0 {
                    logger.error("dead-letter store unavailable; holding commits until it is back", metadata: [
                        "error": "\(error)", "attempt": "\(attempt)",
                    ])
                }
                do {
                    try await Task.sleep(for: deadLetterRetryDelay)
                } catch {
                    return false
                }
            }
        }
    }
}

enum RFC3339Clock {
    static func now() -> String {
        let milliseconds = Int64((Date().timeIntervalSince1970 * 1000).rounded())
        return RFC3339.format(millisecondsSinceEpoch: milliseconds)
    }
}
