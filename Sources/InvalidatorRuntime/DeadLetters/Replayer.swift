import Foundation
import InvalidatorCore
import InvalidatorRedis
import Logging
import Metrics
import Synchronization

/// The dead-letter store could not be read or updated; the run stopped. Records
/// already handled are in `partial`; nothing was lost (a record whose work
/// succeeded but could not be removed is simply replayed again next time).
package struct ReplayStoreUnavailable: Error, CustomStringConvertible, Sendable {
    package var error: any Error
    package var partial: ReplayResult
    package var description: String { "the dead-letter store is unavailable: \(error)" }
}

/// `invalidator replay`: re-executes dead letters.
///
/// For each matching record, oldest first: run its work, then settle it: remove
/// it, or, when it fails again, replace it by an updated record (attempts
/// incremented, only the operations still failing) without ever losing it in
/// between. Records written while the run goes, including those it rewrites,
/// are left for the next run. How a store keeps concurrent replays apart and
/// settles a record: ``DeadLetterReader`` (Redis stream) and
/// ``DeadLetterTopicReader`` (Kafka topic).
///
/// The work of a record: its recorded operations, on the node they failed on
/// (that node alone, so other nodes of a replicated or sharded pool do not get
/// them twice; in a cluster, through the pool, so the slot's current owner gets
/// key operations). Records without operations (bad input, unresolved
/// placeholders) and every record under `reprocess`: the original event planned
/// again with the current rules; for a record of one node, only that pool's
/// operations, on that node. A `delivery-failed` record: its webhook items, to its
/// target. Then, once all of that succeeded, the `notify` and `webhook` work the
/// record carries (`after`), which waited for it.
package final class Replayer: Sendable {
    enum Store: Sendable {
        case redisStream(DeadLetterReader)
        case kafkaTopic(DeadLetterTopic)
    }

    let store: Store
    package let pools: PoolSet
    let configuration: Configuration
    let planner: Planner
    let logger: Logger
    let metrics: any MetricsFactory
    /// nil when the config has no `webhooks:`; closed by ``close()``.
    let webhooks: (any WebhookDelivering)?

    /// A replayer for a loaded config, with its own pools and store connections (closed by ``close()``).
    /// The config was checked when it was loaded, so this cannot fail.
    package init(
        loaded: LoadedConfiguration, logger: Logger, metrics: any MetricsFactory = MetricsSystem.factory,
        webhooks: (any WebhookDelivering)? = nil
    ) {
        let configuration = loaded.configuration
        let pools = PoolSet(configuration: configuration, logger: logger)
        switch configuration.validDeadLetters {
        case .redisStream(let poolName, let stream):
            store = .redisStream(DeadLetterReader(pool: pools.configuredPool(poolName), stream: stream))
        case .kafkaTopic(let topic, let lockPoolName):
            let kafka = configuration.validKafkaSource
            store = .kafkaTopic(DeadLetterTopic(
                brokers: kafka.brokers, topic: topic, properties: kafka.properties, group: "\(kafka.group).replay",
                lockPool: pools.configuredPool(lockPoolName ?? configuration.pools[0].name)))
        }
        self.configuration = configuration
        self.planner = configuration.planner(rules: loaded.rules)
        self.pools = pools
        self.logger = logger
        self.metrics = metrics
        self.webhooks = webhooks
    }

    /// The Redis stream store's reader; nil for a Kafka topic.
    package var streamReader: DeadLetterReader? {
        if case .redisStream(let reader) = store { reader } else { nil }
    }

    /// Closes the connections this replayer opened.
    package func close() async {
        await pools.close()
        await webhooks?.shutdown()
    }

    // MARK: Run

    package func run(_ options: ReplayOptions) async throws -> ReplayResult {
        let limiter = options.ratePerSecond.map { RateLimiter(operationsPerSecond: $0) }
        var results: [ReplayRecordResult] = []
        var remaining: Int?
        do {
            switch store {
            case .redisStream(let reader):
                try await replayStream(reader, options: options, limiter: limiter, results: &results)
                remaining = try await reader.count()
            case .kafkaTopic(let topic):
                try await replayTopic(topic, options: options, limiter: limiter, results: &results, remaining: &remaining)
            }
            let result = ReplayResult(dryRun: options.dryRun, records: results, remaining: remaining ?? 0)
            record(result, options)
            return result
        } catch let error as CancellationError {
            throw error
        } catch let error as ReplayAlreadyRunning {
            throw error
        } catch {
            if case .redisStream(let reader) = store { remaining = try? await reader.count() }
            let partial = ReplayResult(dryRun: options.dryRun, records: results, remaining: remaining ?? 0)
            record(partial, options)
            throw ReplayStoreUnavailable(error: error, partial: partial)
        }
    }

    private func record(_ result: ReplayResult, _ options: ReplayOptions) {
        guard !options.dryRun else { return }
        DeadLetterMetrics.recordReplayed(result: "succeeded", count: result.replayed, factory: metrics)
        DeadLetterMetrics.recordReplayed(result: "failed", count: result.failed, factory: metrics)
        DeadLetterMetrics.recordReplayed(result: "skipped", count: result.skipped, factory: metrics)
        DeadLetterMetrics.recordRemaining(result.remaining, factory: metrics)
        logger.info("replay finished", metadata: [
            "replayed": "\(result.replayed)", "still_failing": "\(result.failed)",
            "skipped": "\(result.skipped)", "remaining": "\(result.remaining)",
        ])
    }

    func matches(_ entry: StoredDeadLetter, _ options: ReplayOptions) -> Bool {
        let record = entry.record
        if let since = options.sinceMilliseconds, let written = entry.writtenAtMilliseconds, written < since { return false }
        if !options.reasons.isEmpty {
            guard let reason = record?.reason.rawValue ?? entry.fields["reason"], options.reasons.contains(reason) else { return false }
        }
        if !options.rules.isEmpty {
            var rules = Set(record?.operations.map(\.rule) ?? [])
            if let rule = record?.rule ?? entry.fields["rule"] { rules.insert(rule) }
            guard !rules.isDisjoint(with: options.rules) else { return false }
        }
        if !options.nodes.isEmpty {
            guard let node = record?.node ?? entry.fields["node"],
                  options.nodes.contains(where: { Self.sameNode($0, node) })
            else { return false }
        }
        if !options.targets.isEmpty {
            guard let target = record?.target ?? entry.fields["target"], options.targets.contains(target) else { return false }
        }
        return true
    }

    static func sameNode(_ lhs: String, _ rhs: String) -> Bool {
        if let left = HostPort(lhs), let right = HostPort(rhs) { return left == right }
        return lhs == rhs
    }

    // MARK: One record

    /// How a record's replay ended, and how its store must settle it.
    enum Attempt {
        /// Its work succeeded: remove the record.
        case succeeded(ReplayRecordResult)
        /// It failed again: replace the record by these.
        case failed([DeadLetter], ReplayRecordResult)
    }

    /// The result for a record that cannot be read; it stays for an operator to look at.
    func unreadable(_ entry: StoredDeadLetter, dryRun: Bool) -> ReplayRecordResult {
        ReplayRecordResult(
            id: entry.id, outcome: dryRun ? .wouldFail : .failed, reason: "unreadable-record", rule: entry.fields["rule"], pool: nil,
            node: entry.fields["node"], operations: [], attempts: nil, detail: entry.decodingError)
    }

    /// Runs the record's work; changes nothing in the store.
    func attempt(
        _ id: String, _ record: DeadLetter, options: ReplayOptions, limiter: RateLimiter?
    ) async throws -> Attempt {
        let work = prepare(record, reprocess: options.reprocess)
        let now = RFC3339Clock.now()
        if let rejection = work.rejection {
            var updated = record
            updated.reason = rejection.reason
            updated.errorClass = rejection.errorClass
            updated.errorMessage = rejection.message
            updated.rule = rejection.rule
            updated.operations = []
            if rejection.reason == .invalidJSON || rejection.reason == .schemaViolation {
                updated.pool = nil
                updated.node = nil
            }
            updated.attempts = record.attempts.addingSaturating(1)
            updated.lastFailedAt = now
            logger.warning("dead letter still failing", metadata: metadata(id, updated))
            return .failed([updated], ReplayRecordResult(
                id: id, outcome: .failed, reason: updated.reason.rawValue, rule: updated.rule, pool: updated.pool,
                node: updated.node, operations: [], attempts: updated.attempts, detail: rejection.message))
        }

        var failures: [DeadLetter] = []
        var executed: [String] = []
        for target in work.targets where !target.operations.isEmpty {
            if let limiter { try await limiter.acquire(target.operations.count) }
            executed += target.operations.map { $0.operation.description }
            failures += await execute(target).map { updated(record, failure: $0, pending: work.pending, at: now) }
        }
        if !work.deliveries.isEmpty {
            if let limiter { try await limiter.acquire(work.deliveries.count) }
            executed += work.deliveries.map(\.summary)
            failures += updated(record, failures: await webhooks.deliver(work.deliveries), of: work.deliveries, pending: work.pending, at: now)
        }
        // The work that waited for this record's: now or, if it failed again, with the updated records.
        if failures.isEmpty, let pending = work.pending {
            let operations = pending.notifications.reduce(0) { $0 + $1.operations.count }
            if let limiter { try await limiter.acquire(operations + pending.webhooks.count) }
            executed += pending.notifications.flatMap { $0.operations.map(\.operation.description) } + pending.webhooks.map(\.summary)
            for pool in pending.notifications {
                failures += await execute(Target(pool: pool.pool, node: nil, operations: pool.operations))
                    .map { updated(record, failure: $0, pending: nil, at: now) }
            }
            failures += updated(record, failures: await webhooks.deliver(pending.webhooks), of: pending.webhooks, pending: nil, at: now)
        }
        if failures.isEmpty {
            logger.info("dead letter replayed", metadata: metadata(id, record))
            return .succeeded(ReplayRecordResult(
                id: id, outcome: .replayed, reason: record.reason.rawValue, rule: record.rule, pool: record.pool,
                node: record.node, operations: executed, attempts: nil,
                detail: executed.isEmpty ? "nothing to do under the current rules" : nil))
        }
        for failure in failures {
            logger.warning("dead letter still failing", metadata: metadata(id, failure))
        }
        let first = failures[0]
        return .failed(failures, ReplayRecordResult(
            id: id, outcome: .failed, reason: first.reason.rawValue, rule: first.rule,
            pool: first.pool, node: failures.count == 1 ? first.node : failures.compactMap(\.node).joined(separator: ","),
            operations: executed, attempts: failures.map(\.attempts).max(),
            detail: "\(first.errorClass): \(first.errorMessage)"))
    }

    /// `record` after its operations failed again on one node: only those operations, with the work still waiting for them.
    private func updated(_ record: DeadLetter, failure: NodeFailure, pending: SecondLayerWork?, at now: String) -> DeadLetter {
        var updated = record
        updated.reason = .operationFailed
        updated.errorClass = failure.error.code.rawValue
        updated.errorMessage = failure.error.message
        updated.pool = failure.pool
        updated.node = failure.node
        updated.operations = failure.operations
        updated.target = nil
        updated.webhooks = []
        updated.pending = pending
        let rules = Set(failure.operations.map(\.rule))
        updated.rule = rules.count == 1 ? rules.first : nil
        updated.attempts = record.attempts.addingSaturating(max(failure.attempts, 1))
        updated.lastFailedAt = now
        return updated
    }

    /// `record` after webhook items failed again: one record per target, with only the items it did not take.
    private func updated(
        _ record: DeadLetter, failures: [WebhookDeliveryFailure], of items: [WebhookItem], pending: SecondLayerWork?, at now: String
    ) -> [DeadLetter] {
        WebhookDeliveryFailure.byTarget(failures).map { target, failures in
            var updated = record
            updated.recordDeliveryFailure(target: target, failures, of: items)
            updated.pending = pending
            updated.attempts = record.attempts.addingSaturating(max(failures.map(\.attempts).max() ?? 0, 1))
            updated.lastFailedAt = now
            return updated
        }
    }

    private func metadata(_ id: String, _ record: DeadLetter) -> Logger.Metadata {
        [
            "entry": "\(id)", "reason": "\(record.reason.rawValue)", "rule": "\(record.rule ?? "-")",
            "pool": "\(record.pool ?? "-")", "node": "\(record.node ?? "-")", "target": "\(record.target ?? "-")",
            "attempts": "\(record.attempts)",
            "error": "\(record.errorMessage)",
        ]
    }

    func skipped(_ id: String, _ record: DeadLetter, _ cause: String) -> ReplayRecordResult {
        ReplayRecordResult(
            id: id, outcome: .skipped, reason: record.reason.rawValue, rule: record.rule, pool: record.pool,
            node: record.node, operations: [], attempts: nil, detail: cause)
    }

    func describe(_ id: String, _ record: DeadLetter, work: Work) -> ReplayRecordResult {
        if let rejection = work.rejection {
            return ReplayRecordResult(
                id: id, outcome: .wouldFail, reason: rejection.reason.rawValue, rule: rejection.rule ?? record.rule,
                pool: record.pool, node: record.node, operations: [], attempts: record.attempts, detail: rejection.message)
        }
        let operations = work.targets.flatMap { target in
            target.operations.map { "\($0.operation.description) on \(target.pool)/\(target.node ?? "every node it routes to")" }
        } + work.deliveries.map(\.summary) + (work.pending.map { pending in
            pending.notifications.flatMap { pool in
                pool.operations.map { "\($0.operation.description) on \(pool.pool), once the above succeeded" }
            } + pending.webhooks.map { "\($0.summary), once the above succeeded" }
        } ?? [])
        return ReplayRecordResult(
            id: id, outcome: .wouldReplay, reason: record.reason.rawValue, rule: record.rule, pool: record.pool,
            node: record.node, operations: operations, attempts: record.attempts,
            detail: operations.isEmpty ? "nothing to do under the current rules" : nil)
    }

    // MARK: Planning

    struct Target {
        var pool: String
        /// nil: wherever the pool routes the operations.
        var node: String?
        var operations: [PlannedOperation]
    }

    struct Rejection {
        var reason: DeadLetter.Reason
        var errorClass: String
        var message: String
        var rule: String?
    }

    struct Work {
        var targets: [Target] = []
        /// Webhook items to send again (a `delivery-failed` record).
        var deliveries: [WebhookItem] = []
        /// What runs once `targets` and `deliveries` succeeded.
        var pending: SecondLayerWork?
        var rejection: Rejection?
    }

    func prepare(_ record: DeadLetter, reprocess: Bool) -> Work {
        let decoded = decodeEvent(record)
        if !reprocess && record.target != nil {
            return Work(deliveries: record.webhooks, pending: record.pending)
        }
        if !reprocess && !record.operations.isEmpty {
            var operations = record.operations
            if case .success(let message) = decoded {
                let event = message.summary
                // The record's shape has no event_id or occurred_at for jobs; the event has them.
                for index in operations.indices {
                    if case .precompute(var job) = operations[index].operation, job.eventID == nil, job.occurredAt == nil {
                        job.eventID = event.eventID
                        job.occurredAt = event.occurredAt
                        operations[index].operation = .precompute(job)
                    }
                }
            }
            return Work(targets: [Target(pool: record.pool ?? "", node: record.node, operations: operations)], pending: record.pending)
        }
        let message: DecodedMessage
        switch decoded {
        case .success(let value):
            message = value
        case .failure(let error):
            return Work(rejection: Rejection(
                reason: DeadLetter.Reason(error.reason),
                errorClass: error.reason.rawValue, message: error.message, rule: nil))
        }
        let plan = planner.plan(message)
        if let rejection = plan.rejection {
            return Work(rejection: Rejection(
                reason: DeadLetter.Reason(rejection.reason),
                errorClass: rejection.reason.rawValue,
                message: rejection.detail, rule: rejection.rule))
        }
        let pending = plan.hasSecondLayerWork ? SecondLayerWork(plan) : nil
        if let pool = record.pool, let node = record.node {
            // A record of one node: the event's work there, not again everywhere.
            let operations = plan.pools.first { $0.pool == pool }?.operations ?? []
            return Work(targets: [Target(pool: pool, node: node, operations: operations)], pending: pending)
        }
        return Work(targets: plan.pools.map { Target(pool: $0.pool, node: nil, operations: $0.operations) }, pending: pending)
    }

    private func decodeEvent(_ record: DeadLetter) -> Result<DecodedMessage, EventDecodingError> {
        let decoder: EventDecoder = switch record.source {
        case .kafka: configuration.sources.kafka?.decoder ?? EventDecoder()
        case .redisStream: configuration.sources.redisStream?.decoder ?? EventDecoder()
        case .redisPubSub: configuration.sources.redisPubSub?.decoder ?? EventDecoder()
        case .manual: EventDecoder()
        }
        return Self.decodeEvent(record, decoder: decoder)
    }

    /// The record's event decoded as its source's format and mapping say, with the
    /// headers it was received with.
    package static func decodeEvent(_ record: DeadLetter, decoder: EventDecoder) -> Result<DecodedMessage, EventDecodingError> {
        do {
            return .success(try decoder.decodeMessage(record.event, cloudEventHeaders: record.headers))
        } catch {
            return .failure(error)
        }
    }

    // MARK: Execution

    private func execute(_ target: Target) async -> [NodeFailure] {
        func failAll(_ message: String) -> [NodeFailure] {
            [NodeFailure(
                pool: target.pool, node: target.node ?? "", operations: target.operations,
                error: RedisError(code: .other, message: message), attempts: 1)]
        }
        guard let pool = pools.pool(named: target.pool) else {
            return failAll("pool '\(target.pool)' is not in the config")
        }
        var node: RedisEndpoint?
        if let recorded = target.node, pool.configuration.mode != .cluster {
            guard let endpoint = HostPort(recorded), pool.configuration.nodes.contains(endpoint) else {
                return failAll("node \(recorded) is not in pool '\(target.pool)' (replay with --reprocess to plan the event for the current pools)")
            }
            node = endpoint
        }
        let report = await pool.execute(target.operations.map(\.operation), on: node)
        var planned: [CacheOperation: PlannedOperation] = [:]
        for operation in target.operations where planned[operation.operation] == nil { planned[operation.operation] = operation }
        return report.nodes.filter { !$0.failed.isEmpty }.map { node in
            NodeFailure(
                pool: target.pool, node: node.node.description,
                operations: node.failed.map { planned[$0.operation] ?? PlannedOperation($0.operation, rule: "") },
                error: node.failed[0].error, attempts: node.failed.map(\.attempts).max() ?? 1)
        }
    }
}

/// Paces operations to a rate: each batch of n operations starts n/rate seconds
/// after the previous one started, so a recovering node is never flooded.
final class RateLimiter: Sendable {
    private let interval: Duration
    private let next = Mutex<ContinuousClock.Instant?>(nil)

    init(operationsPerSecond: Double) {
        interval = .nanoseconds(Int64(1_000_000_000 / max(operationsPerSecond, 0.001)))
    }

    func acquire(_ operations: Int) async throws {
        let start = next.withLock { next in
            let now = ContinuousClock.now
            let start = max(now, next ?? now)
            next = start + interval * operations
            return start
        }
        // Timer: the --rate pacing.
        try await Task.sleep(until: start, clock: .continuous)
    }
}
