import Metrics

/// Dead-letter metrics, recorded through swift-metrics. Libraries never bootstrap
/// a backend: by default these go to whatever `MetricsSystem` has (a no-op until
/// the executable bootstraps one); tests pass their own factory.
///
/// - `invalidator_dead_letters_written_total{reason,pool,node,target}`: records durably
///   stored; `target` is the webhook target of a `delivery-failed` record (`pool` and
///   `node` empty), empty for the others (`pool` and `node` empty too for records that
///   never reached a pool).
/// - `invalidator_dead_letters_replayed_total{result}`: records handled by `replay`;
///   `result` is `succeeded`, `failed` or `skipped`.
/// - `invalidator_dead_letters_remaining`: records in the store (the worker counts a Redis
///   stream store periodically; `replay` sets it after each run).
/// - `invalidator_dead_letter_store_bytes`: memory the Redis stream store takes on its node
///   (`MEMORY USAGE`), sampled by the worker with the count.
package enum DeadLetterMetrics {
    package static let written = "invalidator_dead_letters_written_total"
    package static let replayed = "invalidator_dead_letters_replayed_total"
    package static let remaining = "invalidator_dead_letters_remaining"
    package static let storeBytes = "invalidator_dead_letter_store_bytes"

    static func recordWritten(_ records: [DeadLetter], factory: any MetricsFactory = MetricsSystem.factory) {
        var counts: [[String]: Int] = [:]
        for record in records {
            counts[[record.reason.rawValue, record.pool ?? "", record.node ?? "", record.target ?? ""], default: 0] += 1
        }
        for (labels, count) in counts {
            let dimensions = [("reason", labels[0]), ("pool", labels[1]), ("node", labels[2]), ("target", labels[3])]
            Counter(label: written, dimensions: dimensions, factory: factory).increment(by: count)
        }
    }

    static func recordReplayed(result: String, count: Int = 1, factory: any MetricsFactory) {
        guard count > 0 else { return }
        Counter(label: replayed, dimensions: [("result", result)], factory: factory).increment(by: count)
    }

    static func recordRemaining(_ count: Int, factory: any MetricsFactory) {
        Gauge(label: remaining, dimensions: [], factory: factory).record(count)
    }

    static func recordStoreBytes(_ bytes: Int, factory: any MetricsFactory) {
        Gauge(label: storeBytes, dimensions: [], factory: factory).record(bytes)
    }
}
