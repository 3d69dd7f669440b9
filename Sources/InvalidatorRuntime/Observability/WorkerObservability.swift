import CoreMetrics
import InvalidatorCore

/// How a worker reports on itself: metrics, the HTTP listener, health checks
/// and the rules reloader.
package struct WorkerObservability: Sendable {
    /// Where metrics go. Defaults to `MetricsSystem.factory`, a no-op unless the
    /// executable bootstrapped a backend.
    package var metrics: WorkerMetrics
    /// Serve `/metrics`, `/healthz` and `/readyz`. Off by default so that
    /// embedding a worker (tests, tools) does not open a port.
    package var serveHTTP: Bool
    /// Overrides `http.listen` (tests use `127.0.0.1:0`).
    package var listen: HostPort?
    /// Renders the metrics for `/metrics` (the Prometheus registry's text).
    package var renderMetrics: (@Sendable () -> String)?
    /// Overrides `http.health_check_interval`, the period of the PINGs behind
    /// `invalidator_node_up` and `/readyz`.
    package var healthCheckInterval: Duration?
    /// Period of the rules files' change check; nil turns hot reload off.
    package var rulesReloadInterval: Duration?
    /// How long a changed rules file must stay unchanged before it is loaded.
    package var rulesReloadSettle: Duration
    /// How long a processing loop may go without a heartbeat before `/healthz`
    /// reports it stalled; nil derives it from the pools' timeouts and retries
    /// (``LivenessMonitor/defaultStallTimeout(pools:)``).
    package var stallTimeout: Duration?

    package init(
        metrics: WorkerMetrics = WorkerMetrics(), serveHTTP: Bool = false, listen: HostPort? = nil,
        renderMetrics: (@Sendable () -> String)? = nil, healthCheckInterval: Duration? = nil,
        rulesReloadInterval: Duration? = .seconds(1), rulesReloadSettle: Duration = .milliseconds(300),
        stallTimeout: Duration? = nil
    ) {
        self.metrics = metrics
        self.serveHTTP = serveHTTP
        self.listen = listen
        self.renderMetrics = renderMetrics
        self.healthCheckInterval = healthCheckInterval
        self.rulesReloadInterval = rulesReloadInterval
        self.rulesReloadSettle = rulesReloadSettle
        self.stallTimeout = stallTimeout
    }
}
