import CoreMetrics
import InvalidatorCore

/// Names of the webhook metrics; the README's "Metrics reference" lists them.
package enum WebhookMetricName {
    /// Counter {target, result}: HTTP requests sent, retries included; `result` is `success` (2xx) or `failure`.
    package static let requests = "invalidator_webhook_requests_total"
    /// Counter {target}: requests sent again after a retriable failure.
    package static let retries = "invalidator_webhook_retries_total"
    /// Timer {target}: one request, connect to last byte of the answer (or the failure).
    package static let requestSeconds = "invalidator_webhook_request_seconds"
    /// Recorder {target}: webhook items (one per event and rule) carried by each merged request.
    package static let batchItems = "invalidator_webhook_batch_items"
    /// Gauge {target}: 1 while the target's circuit breaker is open or half-open, else 0.
    package static let circuitOpen = "invalidator_webhook_circuit_open"
}

/// One target's metrics, created once: the target's name is their only label
/// besides a counter's result.
struct WebhookTargetMetrics: Sendable {
    private let succeeded: Counter
    private let failed: Counter
    private let retries: Counter
    private let requestTime: CoreMetrics.Timer
    private let batchItems: Recorder
    private let circuitOpen: Gauge

    init(target: String, factory: any MetricsFactory) {
        succeeded = Counter(label: WebhookMetricName.requests, dimensions: [("target", target), ("result", "success")], factory: factory)
        failed = Counter(label: WebhookMetricName.requests, dimensions: [("target", target), ("result", "failure")], factory: factory)
        retries = Counter(label: WebhookMetricName.retries, dimensions: [("target", target)], factory: factory)
        requestTime = CoreMetrics.Timer(label: WebhookMetricName.requestSeconds, dimensions: [("target", target)], factory: factory)
        batchItems = Recorder(label: WebhookMetricName.batchItems, dimensions: [("target", target)], aggregate: true, factory: factory)
        circuitOpen = Gauge(label: WebhookMetricName.circuitOpen, dimensions: [("target", target)], factory: factory)
    }

    func request(succeeded ok: Bool, took duration: Duration) {
        (ok ? succeeded : failed).increment()
        requestTime.recordNanoseconds(duration.nanoseconds)
    }

    func retried() { retries.increment() }

    func carried(items: Int) { batchItems.record(items) }

    func circuit(isOpen: Bool) { circuitOpen.record(isOpen ? 1 : 0) }
}
