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
    let logger: Logger
    let workerID: String
    /// Pause between attempts to reach an unavailable dead-letter store.
    let deadLetterRetryDelay: Duration

    public init(
        rules: RulesState, pools: PoolSet, deadLetters: any DeadLetterStore, workerID: String, logger: Logger,
        deadLetterRetryDelay: Duration = .milliseconds(500)
    ) {
        self.rules = rules
        self.executor = BatchExecutor(pools: pools)
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

    /// Processes `batch` in order. Operations of one event never run before those of an earlier event on the same node.
    ///
    /// - Parameter onRedeleteFinished: called once per event index in `awaitingRedelete` when its redeletes ran.
    public func process(
        _ batch: [IncomingEvent], onRedeleteFinished: @escaping @Sendable (Int) -> Void = { _ in }
    ) async -> BatchResult {
        let planner = rules.planner
        var plans: [Plan] = []
        var planEventIndexes: [Int] = []
        var records: [DeadLetter] = []
        let now = RFC3339Clock.now()
        for (index, event) in batch.enumerated() {
            guard let payload = event.payload else { continue }
            do {
                let decoded = try decode(event, payload: payload)
                let plan = planner.plan(decoded)
                if let rejection = plan.rejection {
                    records.append(deadLetter(event, payload: payload, rejection: rejection, at: now))
                } else if !plan.pools.isEmpty {
                    plans.append(plan)
                    planEventIndexes.append(index)
                }
            } catch {
                records.append(DeadLetter(
                    event: payload, source: event.source, reason: error.reason == .invalidJSON ? .invalidJSON : .schemaViolation,
                    errorClass: error.reason.rawValue, errorMessage: error.message, failedAt: now, worker: workerID))
            }
        }

        let failures = await executor.execute(plans.map(\.pools))
        for planIndex in failures.keys.sorted() {
            let event = batch[planEventIndexes[planIndex]]
            for failure in failures[planIndex]! {
                records.append(DeadLetter(
                    event: event.payload ?? [], source: event.source, reason: .operationFailed,
                    errorClass: failure.error.code.rawValue, errorMessage: failure.error.message,
                    rule: failure.operations.first?.rule, pool: failure.pool, node: failure.node,
                    operations: failure.operations, attempts: failure.attempts, failedAt: RFC3339Clock.now(), worker: workerID))
            }
        }
        guard await store(records) else {
            return BatchResult(isDurable: false, awaitingRedelete: [])
        }

        var awaiting: Set<Int> = []
        for (planIndex, plan) in plans.enumerated() {
            let eventIndex = planEventIndexes[planIndex]
            let groups = plan.pools.flatMap { pool in pool.redeletes.map { (pool.pool, $0) } }
            guard !groups.isEmpty else { continue }
            awaiting.insert(eventIndex)
            let event = batch[eventIndex]
            redeletes.schedule(groups, event: event) { [self] failed in
                let durable = await store(failed.map { failure in
                    DeadLetter(
                        event: event.payload ?? [], source: event.source, reason: .operationFailed,
                        errorClass: failure.error.code.rawValue, errorMessage: failure.error.message,
                        rule: failure.operations.first?.rule, pool: failure.pool, node: failure.node,
                        operations: failure.operations, attempts: failure.attempts, failedAt: RFC3339Clock.now(),
                        worker: workerID)
                })
                if durable { onRedeleteFinished(eventIndex) }
            }
        }
        return BatchResult(isDurable: true, awaitingRedelete: awaiting)
    }

    private func decode(_ event: IncomingEvent, payload: [UInt8]) throws(EventDecodingError) -> ChangeEvent {
        let decoder = EventDecoder(format: event.format)
        if let attributes = event.cloudEventAttributes, event.format == .auto || event.format == .cloudevents {
            return try decoder.decodeCloudEventBinary(attributes: attributes, data: payload)
        }
        return try decoder.decode(payload)
    }

    private func deadLetter(_ event: IncomingEvent, payload: [UInt8], rejection: PlanRejection, at time: String) -> DeadLetter {
        DeadLetter(
            event: payload, source: event.source,
            reason: rejection.reason == .unresolvedPlaceholder ? .unresolvedPlaceholder : .invalidKey,
            errorClass: rejection.reason.rawValue, errorMessage: "template '\(rejection.template)': \(rejection.message)",
            rule: rejection.rule, failedAt: time, worker: workerID)
    }

    /// Stores dead letters, retrying while the store is down. Returns false only
    /// when cancelled (shutdown) before the store came back.
    func store(_ records: [DeadLetter]) async -> Bool {
        guard !records.isEmpty else { return true }
        var attempt = 0
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
