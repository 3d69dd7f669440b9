import Foundation
import InvalidatorCore
import InvalidatorRedis
import Logging
import Metrics
import Synchronization

/// A configuration `replay` cannot work with, such as a Kafka dead-letter topic.
public struct ReplayUnsupported: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The dead-letter store could not be read or updated; the run stopped. Records
/// already handled are in `partial`; nothing was lost (a record whose work
/// succeeded but could not be removed is simply replayed again next time).
public struct ReplayStoreUnavailable: Error, CustomStringConvertible, Sendable {
    public var error: RedisError
    public var partial: ReplayResult
    public var description: String { "the dead-letter store is unavailable: \(error)" }
}

/// `invalidator replay`: re-executes dead letters from the Redis stream store.
///
/// For each matching record, oldest first: claim it (so concurrent replays never
/// apply a record twice), make sure it is still there, run its work, then remove
/// it, or, when it fails again, replace it atomically by an updated record
/// (attempts incremented, only the operations still failing). Records written
/// while the run goes, including those it rewrites, are left for the next run.
///
/// The work of a record: its recorded operations, on the node they failed on
/// (through a connection to that node alone, so other nodes of a replicated or
/// sharded pool do not get them twice; in a cluster, through the pool, so the
/// slot's current owner gets key operations). Records without operations (bad
/// input, unresolved placeholders) and every record under `reprocess`: the
/// original event planned again with the current rules; for a record of one
/// node, only that pool's operations, on that node.
public final class Replayer: Sendable {
    public let reader: DeadLetterReader
    public let pools: PoolSet
    let configuration: Configuration
    let planner: Planner
    let logger: Logger
    let metrics: any MetricsFactory
    private let ownsPools: Bool
    /// Single-node pools for per-node execution, by `pool/node`.
    private let nodePools = Mutex<[String: RedisPool]>([:])

    public init(
        configuration: Configuration, rules: RuleSet, pools: PoolSet, reader: DeadLetterReader, logger: Logger,
        metrics: any MetricsFactory = MetricsSystem.factory
    ) {
        self.configuration = configuration
        self.planner = Planner(rules: rules, pools: configuration.poolTargets)
        self.pools = pools
        self.reader = reader
        self.logger = logger
        self.metrics = metrics
        self.ownsPools = false
    }

    /// A replayer for a loaded config, with its own pools (closed by ``close()``).
    public init(loaded: LoadedConfiguration, logger: Logger, metrics: any MetricsFactory = MetricsSystem.factory) throws {
        let configuration = loaded.configuration
        let stream: (pool: String, stream: String)
        switch configuration.deadLetters {
        case .redisStream(let pool, let name)?:
            stream = (pool, name)
        case .kafkaTopic(let topic)?:
            throw ReplayUnsupported(
                "replay reads dead letters from a Redis stream; dead_letters.kafka_topic '\(topic)' is not supported yet; read the topic with a Kafka consumer and re-publish the events to the source topic")
        case nil:
            throw ConfigurationProblem("the config has no dead_letters destination")
        }
        let pools = try PoolSet(configuration: configuration, logger: logger)
        guard let pool = pools.pool(named: stream.pool) else {
            throw ConfigurationProblem("dead_letters.pool '\(stream.pool)' is not defined")
        }
        self.configuration = configuration
        self.planner = Planner(rules: loaded.rules, pools: configuration.poolTargets)
        self.pools = pools
        self.reader = DeadLetterReader(pool: pool, stream: stream.stream)
        self.logger = logger
        self.metrics = metrics
        self.ownsPools = true
    }

    /// Closes the connections this replayer opened.
    public func close() async {
        let opened = nodePools.withLock { pools in
            defer { pools = [:] }
            return Array(pools.values)
        }
        for pool in opened { await pool.close() }
        if ownsPools { await pools.close() }
    }

    // MARK: Run

    public func run(_ options: ReplayOptions) async throws -> ReplayResult {
        let token = "\(options.replayerID):\(UUID().uuidString.prefix(8))"
        let limiter = options.ratePerSecond.map { RateLimiter(operationsPerSecond: $0) }
        var results: [ReplayRecordResult] = []
        do {
            // Only what is there now: records rewritten by this run land after `end`.
            if let end = try await reader.lastID() {
                var start = options.sinceMilliseconds.map { "\(max($0, 0))-0" } ?? "-"
                scan: while true {
                    let batch = try await reader.read(from: start, through: end, count: options.batchSize)
                    for entry in batch where matches(entry, options) {
                        if let limit = options.limit, results.count >= limit { break scan }
                        results.append(try await handle(entry, options: options, token: token, limiter: limiter))
                    }
                    guard batch.count == options.batchSize, let last = batch.last, last.id != end else { break }
                    start = "(" + last.id
                }
            }
        } catch let error as RedisError {
            let partial = ReplayResult(dryRun: options.dryRun, records: results, remaining: (try? await reader.count()) ?? 0)
            record(partial, options)
            throw ReplayStoreUnavailable(error: error, partial: partial)
        }
        let result = ReplayResult(dryRun: options.dryRun, records: results, remaining: try await reader.count())
        record(result, options)
        return result
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
        return true
    }

    static func sameNode(_ lhs: String, _ rhs: String) -> Bool {
        if let left = RedisEndpoint(lhs), let right = RedisEndpoint(rhs) { return left == right }
        return lhs == rhs
    }

    // MARK: One record

    private func handle(
        _ entry: StoredDeadLetter, options: ReplayOptions, token: String, limiter: RateLimiter?
    ) async throws -> ReplayRecordResult {
        guard let listed = entry.record else {
            // Never removed: an operator has to look at it.
            return ReplayRecordResult(
                id: entry.id, outcome: options.dryRun ? .wouldFail : .failed, reason: "unreadable-record", rule: entry.fields["rule"], pool: nil,
                node: entry.fields["node"], operations: [], attempts: nil, detail: entry.decodingError)
        }
        if options.dryRun {
            return describe(entry.id, listed, work: prepare(listed, reprocess: options.reprocess))
        }
        guard try await reader.claim(entry.id, owner: token, ttl: options.lockTTL) else {
            return skipped(entry.id, listed, "locked by another replay")
        }
        let result: ReplayRecordResult
        do {
            // Another replay may have finished it between our read and our claim.
            if let current = try await reader.entry(entry.id), let record = current.record {
                result = try await replay(entry.id, record, options: options, limiter: limiter)
            } else {
                result = skipped(entry.id, listed, "already replayed")
            }
        } catch {
            try? await reader.release(entry.id, owner: token)
            throw error
        }
        try await reader.release(entry.id, owner: token)
        return result
    }

    private func replay(
        _ id: String, _ record: DeadLetter, options: ReplayOptions, limiter: RateLimiter?
    ) async throws -> ReplayRecordResult {
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
            updated.attempts = record.attempts + 1
            updated.lastFailedAt = now
            try await reader.replace(id, with: [updated])
            logger.warning("dead letter still failing", metadata: metadata(id, updated))
            return ReplayRecordResult(
                id: id, outcome: .failed, reason: updated.reason.rawValue, rule: updated.rule, pool: updated.pool,
                node: updated.node, operations: [], attempts: updated.attempts, detail: rejection.message)
        }

        var failures: [DeadLetter] = []
        var executed: [String] = []
        for target in work.targets where !target.operations.isEmpty {
            if let limiter { try await limiter.acquire(target.operations.count) }
            executed += target.operations.map { $0.operation.description }
            for failure in await execute(target) {
                var updated = record
                updated.reason = .operationFailed
                updated.errorClass = failure.error.code.rawValue
                updated.errorMessage = failure.error.message
                updated.pool = failure.pool
                updated.node = failure.node
                updated.operations = failure.operations
                let rules = Set(failure.operations.map(\.rule))
                updated.rule = rules.count == 1 ? rules.first : nil
                updated.attempts = record.attempts + max(failure.attempts, 1)
                updated.lastFailedAt = now
                failures.append(updated)
            }
        }
        if failures.isEmpty {
            try await reader.remove(id)
            logger.info("dead letter replayed", metadata: metadata(id, record))
            return ReplayRecordResult(
                id: id, outcome: .replayed, reason: record.reason.rawValue, rule: record.rule, pool: record.pool,
                node: record.node, operations: executed, attempts: nil,
                detail: executed.isEmpty ? "nothing to do under the current rules" : nil)
        }
        try await reader.replace(id, with: failures)
        for failure in failures {
            logger.warning("dead letter still failing", metadata: metadata(id, failure))
        }
        let first = failures[0]
        return ReplayRecordResult(
            id: id, outcome: .failed, reason: DeadLetter.Reason.operationFailed.rawValue, rule: first.rule,
            pool: first.pool, node: failures.count == 1 ? first.node : failures.compactMap(\.node).joined(separator: ","),
            operations: executed, attempts: failures.map(\.attempts).max(),
            detail: "\(first.errorClass): \(first.errorMessage)")
    }

    private func metadata(_ id: String, _ record: DeadLetter) -> Logger.Metadata {
        [
            "entry": "\(id)", "reason": "\(record.reason.rawValue)", "rule": "\(record.rule ?? "-")",
            "pool": "\(record.pool ?? "-")", "node": "\(record.node ?? "-")", "attempts": "\(record.attempts)",
            "error": "\(record.errorMessage)",
        ]
    }

    private func skipped(_ id: String, _ record: DeadLetter, _ cause: String) -> ReplayRecordResult {
        ReplayRecordResult(
            id: id, outcome: .skipped, reason: record.reason.rawValue, rule: record.rule, pool: record.pool,
            node: record.node, operations: [], attempts: nil, detail: cause)
    }

    private func describe(_ id: String, _ record: DeadLetter, work: Work) -> ReplayRecordResult {
        if let rejection = work.rejection {
            return ReplayRecordResult(
                id: id, outcome: .wouldFail, reason: rejection.reason.rawValue, rule: rejection.rule ?? record.rule,
                pool: record.pool, node: record.node, operations: [], attempts: record.attempts, detail: rejection.message)
        }
        let operations = work.targets.flatMap { target in
            target.operations.map { "\($0.operation.description) on \(target.pool)/\(target.node ?? "every node it routes to")" }
        }
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
        var rejection: Rejection?
    }

    func prepare(_ record: DeadLetter, reprocess: Bool) -> Work {
        let decoded = decodeEvent(record)
        if !reprocess && !record.operations.isEmpty {
            var operations = record.operations
            if case .success(let event) = decoded {
                // The record's shape has no event_id or occurred_at for jobs; the event has them.
                for index in operations.indices {
                    if case .precompute(var job) = operations[index].operation, job.eventID == nil, job.occurredAt == nil {
                        job.eventID = event.eventID
                        job.occurredAt = event.occurredAt
                        operations[index].operation = .precompute(job)
                    }
                }
            }
            return Work(targets: [Target(pool: record.pool ?? "", node: record.node, operations: operations)])
        }
        let event: ChangeEvent
        switch decoded {
        case .success(let value):
            event = value
        case .failure(let error):
            return Work(rejection: Rejection(
                reason: error.reason == .invalidJSON ? .invalidJSON : .schemaViolation,
                errorClass: error.reason.rawValue, message: error.message, rule: nil))
        }
        let plan = planner.plan(event)
        if let rejection = plan.rejection {
            return Work(rejection: Rejection(
                reason: rejection.reason == .unresolvedPlaceholder ? .unresolvedPlaceholder : .invalidKey,
                errorClass: rejection.reason.rawValue,
                message: "template '\(rejection.template)': \(rejection.message)", rule: rejection.rule))
        }
        if let pool = record.pool, let node = record.node {
            // A record of one node: the event's work there, not again everywhere.
            let operations = plan.pools.first { $0.pool == pool }?.operations ?? []
            return Work(targets: [Target(pool: pool, node: node, operations: operations)])
        }
        return Work(targets: plan.pools.map { Target(pool: $0.pool, node: nil, operations: $0.operations) })
    }

    private func decodeEvent(_ record: DeadLetter) -> Result<ChangeEvent, EventDecodingError> {
        let format: EventFormat = switch record.source {
        case .kafka: configuration.sources.kafka?.format ?? .auto
        case .redisStream: configuration.sources.redisStream?.format ?? .auto
        case .redisPubSub: configuration.sources.redisPubSub?.format ?? .auto
        case .manual: .auto
        }
        let decoder = EventDecoder(format: format)
        do {
            if record.headers["ce_specversion"] != nil, format == .auto || format == .cloudevents {
                var attributes: [String: String] = [:]
                for (key, value) in record.headers where key.hasPrefix("ce_") { attributes[String(key.dropFirst(3))] = value }
                return .success(try decoder.decodeCloudEventBinary(attributes: attributes, data: record.event))
            }
            return .success(try decoder.decode(record.event))
        } catch {
            return .failure(error)
        }
    }

    // MARK: Execution

    struct TargetFailure {
        var pool: String
        var node: String
        var operations: [PlannedOperation]
        var error: RedisError
        var attempts: Int
    }

    private func execute(_ target: Target) async -> [TargetFailure] {
        func failAll(_ message: String) -> [TargetFailure] {
            [TargetFailure(
                pool: target.pool, node: target.node ?? "", operations: target.operations,
                error: RedisError(code: .other, message: message), attempts: 1)]
        }
        guard let pool = pools.pool(named: target.pool) else {
            return failAll("pool '\(target.pool)' is not in the config")
        }
        var executor = pool
        if let node = target.node, pool.configuration.mode != .cluster {
            guard let endpoint = RedisEndpoint(node), pool.configuration.nodes.contains(endpoint) else {
                return failAll("node \(node) is not in pool '\(target.pool)' (replay with --reprocess to plan the event for the current pools)")
            }
            if pool.configuration.nodes.count > 1 {
                executor = nodePool(pool, endpoint)
            }
        }
        let report = await executor.execute(target.operations.map(\.operation))
        var planned: [CacheOperation: PlannedOperation] = [:]
        for operation in target.operations where planned[operation.operation] == nil { planned[operation.operation] = operation }
        return report.nodes.filter { !$0.failed.isEmpty }.map { node in
            TargetFailure(
                pool: target.pool, node: node.node.description,
                operations: node.failed.map { planned[$0.operation] ?? PlannedOperation($0.operation, rule: "") },
                error: node.failed[0].error, attempts: node.failed.map(\.attempts).max() ?? 1)
        }
    }

    /// A pool of the one node, with the pool's credentials, retries and tuning.
    private func nodePool(_ pool: RedisPool, _ node: RedisEndpoint) -> RedisPool {
        nodePools.withLock { pools in
            let key = "\(pool.configuration.name)/\(node)"
            if let existing = pools[key] { return existing }
            var configuration = pool.configuration
            configuration.mode = .single
            configuration.nodes = [node]
            let single = RedisPool(configuration: configuration, logger: logger)
            pools[key] = single
            return single
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
        try await Task.sleep(until: start, clock: .continuous)
    }
}
