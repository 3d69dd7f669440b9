import CoreMetrics
import Foundation
import InvalidatorCore
import InvalidatorRedis

/// Names of the worker's metrics, all prefixed `invalidator_`. The README's
/// "Metrics reference" lists them with their labels; keep the two in step.
package enum MetricName {
    /// Counter {source, result}: events by outcome. `result` is `applied` (every
    /// operation done), `dead_lettered` (all or part of it dead-lettered) or
    /// `skipped` (a tombstone, or no rule matched).
    package static let events = "invalidator_events_total"
    /// Counter {pool, node, kind, result}: cache operations per node; `result` is `ok` or `failed`.
    package static let operations = "invalidator_operations_total"
    /// Counter {pool, node}: retries of operations that failed in the end (attempts - 1 each).
    package static let retries = "invalidator_retries_total"
    /// Histogram (seconds): `occurred_at` (else the broker or entry timestamp) to applied.
    package static let endToEndLatency = "invalidator_end_to_end_latency_seconds"
    /// Gauge {topic, partition}: high watermark minus the committed position.
    package static let consumerLag = "invalidator_consumer_lag"
    /// Gauge: events received and not finished (applied or dead-lettered, redeletes included).
    package static let inFlightEvents = "invalidator_in_flight_events"
    /// Gauge {pool, node}: 1 when the node answered in the last health check (recent traffic or a PING), else 0.
    package static let nodeUp = "invalidator_node_up"
    /// Counter {result}: rules reloads, `ok` or `rejected`.
    package static let ruleReloads = "invalidator_rule_reloads_total"
    /// Gauge: rules in force, set at start and on every accepted reload.
    package static let rulesInForce = "invalidator_rules"
    /// Counter {rule}: keys that the rule's deletes, patterns and tags removed (summed over nodes).
    package static let keysRemoved = "invalidator_keys_removed_total"
    /// Counter {rule, result}: the rule's deletes, patterns and tags per node; `result` is
    /// `removed` (at least one key removed), `absent` (succeeded, nothing to remove) or `failed`.
    package static let ruleOperations = "invalidator_rule_operations_total"
    /// Counter: times the Redis pub/sub subscription was lost and set up again.
    package static let pubSubReconnections = "invalidator_pubsub_reconnections_total"
    /// Histogram (seconds) {source, pool}: a canary event emitted to its key gone on the pool's last node.
    package static let canarySeconds = "invalidator_canary_seconds"
    /// Counter {source, pool}: canary rounds whose key was not gone within `canary.timeout`, or that could not run.
    package static let canaryFailures = "invalidator_canary_failures_total"
    /// Gauge {source, pool}: Unix time of the last passed canary round.
    package static let canaryLastSuccess = "invalidator_canary_last_success_timestamp_seconds"
    /// Gauge {pool}: pattern operations a source's pattern stage holds for the pool, queued or running.
    package static let patternsPending = "invalidator_patterns_pending"
}

/// Records the worker's metrics through swift-metrics. The library never
/// bootstraps a backend: by default it uses whatever `MetricsSystem` has (a no-op
/// until `run` bootstraps Prometheus); tests pass their own factory.
package final class WorkerMetrics: Sendable {
    let factory: any MetricsFactory
    private let inFlight: Meter
    /// Recorded once per applied event: looked up once, not per event.
    private let endToEndLatency: CoreMetrics.Timer

    package init(factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
        inFlight = Meter(label: MetricName.inFlightEvents, dimensions: [], factory: factory)
        endToEndLatency = CoreMetrics.Timer(label: MetricName.endToEndLatency, dimensions: [], factory: factory)
    }

    /// Metrics that go nowhere.
    package static let disabled = WorkerMetrics(factory: NOOPMetricsHandler.instance)

    func events(source: String, result: EventResult, count: Int = 1) {
        guard count > 0 else { return }
        Counter(label: MetricName.events, dimensions: [("source", source), ("result", result.rawValue)], factory: factory)
            .increment(by: count)
    }

    func operations(pool: String, node: String, kind: CacheOperation.Kind, ok: Bool, count: Int) {
        guard count > 0 else { return }
        Counter(
            label: MetricName.operations,
            dimensions: [("pool", pool), ("node", node), ("kind", kind.rawValue), ("result", ok ? "ok" : "failed")],
            factory: factory
        ).increment(by: count)
    }

    func retries(pool: String, node: String, count: Int) {
        guard count > 0 else { return }
        Counter(label: MetricName.retries, dimensions: [("pool", pool), ("node", node)], factory: factory).increment(by: count)
    }

    /// Counts the operations of execution reports, per node and kind.
    func record(_ reports: [ExecutionReport]) {
        for report in reports {
            for node in report.nodes {
                let name = node.node.description
                // Counted in arrays indexed by kind: a node's batch can hold thousands of operations.
                let kinds = CacheOperation.Kind.allCases
                var succeeded = [Int](repeating: 0, count: kinds.count)
                var failed = [Int](repeating: 0, count: kinds.count)
                var retried = 0
                for operation in node.succeeded { succeeded[operation.kind.ordinal] += 1 }
                for failure in node.failed {
                    failed[failure.operation.kind.ordinal] += 1
                    retried += max(failure.attempts - 1, 0)
                }
                for kind in kinds {
                    operations(pool: report.pool, node: name, kind: kind, ok: true, count: succeeded[kind.ordinal])
                    operations(pool: report.pool, node: name, kind: kind, ok: false, count: failed[kind.ordinal])
                }
                retries(pool: report.pool, node: name, count: retried)
                patternWalk(pool: report.pool, node: node)
            }
        }
    }

    /// What one rule's removing operations (deletes, patterns, tags) did in a batch.
    package struct RuleRemovals: Equatable, Sendable {
        package var keysRemoved = 0
        /// Operations (per node) that removed at least one key.
        package var removed = 0
        /// Operations (per node) that succeeded and removed nothing.
        package var absent = 0
        package var failed = 0

        package init() {}

        /// Adds the outcome of one operation on one node.
        package mutating func add(removedKeys: Int, failed: Bool) {
            keysRemoved += removedKeys
            if failed {
                self.failed += 1
            } else if removedKeys > 0 {
                removed += 1
            } else {
                absent += 1
            }
        }
    }

    /// Counts, per rule, the keys removed and the outcome of each removing operation.
    func record(removalsByRule: [String: RuleRemovals]) {
        for (rule, removals) in removalsByRule {
            if removals.keysRemoved > 0 {
                Counter(label: MetricName.keysRemoved, dimensions: [("rule", rule)], factory: factory).increment(by: removals.keysRemoved)
            }
            for (result, count) in [("removed", removals.removed), ("absent", removals.absent), ("failed", removals.failed)] where count > 0 {
                Counter(label: MetricName.ruleOperations, dimensions: [("rule", rule), ("result", result)], factory: factory)
                    .increment(by: count)
            }
        }
    }

    /// Records an event's age. The age comes from the event's own timestamp, which
    /// may be anything (Go's zero time is year 1): an age that is not a number is
    /// skipped, and one beyond `longestRecordedLatency` is recorded as that.
    func latency(seconds: Double) {
        guard seconds.isFinite else { return }
        let clamped = min(max(seconds, 0), Self.longestRecordedLatency)
        endToEndLatency.recordNanoseconds(Int64(clamped * 1_000_000_000))
    }

    /// About 31 years: well inside `Int64` nanoseconds (292 years).
    static let longestRecordedLatency: Double = 1_000_000_000

    func inFlightChanged(by delta: Int) {
        if delta > 0 { inFlight.increment(by: Double(delta)) } else if delta < 0 { inFlight.decrement(by: Double(-delta)) }
    }

    func consumerLag(topic: String, partition: Int32, lag: Int64) {
        Gauge(label: MetricName.consumerLag, dimensions: [("topic", topic), ("partition", String(partition))], factory: factory)
            .record(max(lag, 0))
    }

    /// Stops reporting the lag of a partition this worker no longer owns.
    func forgetConsumerLag(topic: String, partition: Int32) {
        Gauge(label: MetricName.consumerLag, dimensions: [("topic", topic), ("partition", String(partition))], factory: factory)
            .destroy()
    }

    func nodeUp(pool: String, node: String, up: Bool) {
        Gauge(label: MetricName.nodeUp, dimensions: [("pool", pool), ("node", node)], factory: factory).record(up ? 1 : 0)
    }

    func ruleReload(ok: Bool) {
        Counter(label: MetricName.ruleReloads, dimensions: [("result", ok ? "ok" : "rejected")], factory: factory).increment()
    }

    func rulesInForce(_ count: Int) {
        Gauge(label: MetricName.rulesInForce, dimensions: [], factory: factory).record(count)
    }

    /// Records one canary round's result for its source and pool.
    func canary(_ result: CanaryResult) {
        let dimensions = [("source", result.source.description), ("pool", result.pool)]
        if let latency = result.latency {
            CoreMetrics.Timer(label: MetricName.canarySeconds, dimensions: dimensions, factory: factory).recordNanoseconds(latency.nanoseconds)
            Gauge(label: MetricName.canaryLastSuccess, dimensions: dimensions, factory: factory).record(Date().timeIntervalSince1970)
        } else {
            Counter(label: MetricName.canaryFailures, dimensions: dimensions, factory: factory).increment()
        }
    }

    func pubSubReconnection() {
        Counter(label: MetricName.pubSubReconnections, dimensions: [], factory: factory).increment()
    }
}

extension WorkerMetrics {
    /// Counts a durable batch's events by result (per source: events neither
    /// planned nor rejected were skipped) and records the latency of those applied.
    /// - Parameter failed: indexes of plans with operations dead-lettered.
    package func recordOutcomes(of prepared: EventPipeline.PreparedBatch, failed: Set<Int>) {
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
                let origin = prepared.plans[planIndex].event.occurredAt.flatMap(RFC3339.secondsSinceEpoch)
                    ?? prepared.batch[eventIndex].timestampMilliseconds.map { Double($0) / 1000 }
                if let origin { latency(seconds: nowSeconds - origin) }
            }
        }
        for record in prepared.rejected {
            let label = record.source.metricLabel
            counts[label].deadLettered += 1
            counts[label].skipped -= 1
        }
        for (source, count) in counts.bySource {
            events(source: source, result: .applied, count: count.applied)
            events(source: source, result: .deadLettered, count: count.deadLettered)
            events(source: source, result: .skipped, count: count.skipped)
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
}

enum EventResult: String, Sendable {
    case applied
    case deadLettered = "dead_lettered"
    case skipped
}

extension CacheOperation.Kind {
    /// The position in `allCases`, for counting into an array (a short scan of enum cases, no hashing).
    fileprivate var ordinal: Int { Self.allCases.firstIndex(of: self)! }
}

extension SourceCoordinates {
    /// The `source` label: the config key of the source.
    var metricLabel: String {
        switch self {
        case .kafka: "kafka"
        case .redisStream: "redis_stream"
        case .redisPubSub: "redis_pubsub"
        case .manual: "manual"
        }
    }
}

extension MetricName {
    /// Counter {pool, node}: keys the pattern walks' SCAN calls returned (see ``ExecutionReport/PatternWalk``).
    package static let patternKeysScanned = "invalidator_pattern_keys_scanned_total"
    /// Histogram (seconds) {pool, node}: one walk's duration, applying every pattern of a batch on the node.
    package static let patternWalkSeconds = "invalidator_pattern_walk_seconds"
}

extension WorkerMetrics {
    /// Records a node's pattern walk, when the report says one ran there.
    func patternWalk(pool: String, node: ExecutionReport.NodeResult) {
        guard let walk = node.patternWalk else { return }
        let dimensions = [("pool", pool), ("node", node.node.description)]
        Counter(label: MetricName.patternKeysScanned, dimensions: dimensions, factory: factory).increment(by: walk.keysScanned)
        CoreMetrics.Timer(label: MetricName.patternWalkSeconds, dimensions: dimensions, factory: factory).recordNanoseconds(walk.duration.nanoseconds)
    }

    /// Pattern operations queued or running on `pool` in a source's pattern stage.
    func patternsPending(pool: String, count: Int) {
        Gauge(label: MetricName.patternsPending, dimensions: [("pool", pool)], factory: factory).record(count)
    }
}
