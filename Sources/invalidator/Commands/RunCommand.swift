import ArgumentParser
#if canImport(Glibc)
import CMalloc
#endif
import Foundation
import InvalidatorCore
import InvalidatorRuntime
import InvalidatorWebhooks
import Metrics
import Prometheus

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the worker: consume change events and invalidate caches until SIGTERM.",
        discussion: """
            The config path defaults to $INVALIDATOR_CONFIG, else invalidator.yaml. On SIGTERM the \
            worker stops fetching, drains in-flight work for up to shutdown.drain_timeout, commits \
            and exits 0; a second SIGTERM stops at once, committing only finished work.

            It serves GET /metrics (Prometheus), /healthz and /readyz on http.listen \
            (default 0.0.0.0:9090), and reloads the rules when their files change.

            Examples:
              invalidator run --config /etc/invalidator/invalidator.yaml
              INVALIDATOR_CONFIG=invalidator.yaml invalidator run --log-format json
            """
    )

    @Option(help: "The config file.")
    var config: String = ProcessInfo.processInfo.environment["INVALIDATOR_CONFIG"] ?? "invalidator.yaml"

    @OptionGroup var logging: LoggingOptions

    func run() async throws {
        Self.keepFreedMemory()
        let logger = logging.bootstrap()
        let loaded = try loadConfiguration(config)
        let registry = Self.bootstrapMetrics()
        let worker: Worker
        do {
            worker = try Worker(
                loaded: loaded,
                observability: WorkerObservability(serveHTTP: true, renderMetrics: { registry.emitToString() }),
                webhooks: WebhookDispatcher.forConfiguration(loaded.configuration, logger: logger),
                logger: logger)
        } catch {
            throw CommandFailure(message: "\(error)")
        }
        logger.info("invalidator starting", metadata: [
            "config": "\(config)", "rules": "\(loaded.rules.rules.count)", "pools": "\(loaded.configuration.pools.count)",
        ])
        for warning in loaded.configuration.warnings {
            logger.warning("\(warning)", metadata: ["config": "\(config)"])
        }
        try await worker.run()
        logger.info("invalidator stopped")
    }

    /// By default glibc hands the free top of each thread's heap back to the kernel
    /// once 128 KiB are free, then grows it again page by page (an mprotect call and
    /// a page fault each) for the next batch: close to a fifth of the worker's CPU
    /// when draining a backlog, most of it on librdkafka's fetch thread. Memory once
    /// used for batches is kept for the next ones instead, and blocks up to 16 MiB (a
    /// large batch's arrays) come from the heaps rather than from a fresh mmap each time.
    static func keepFreedMemory() {
        #if canImport(Glibc)
        mallopt(M_TRIM_THRESHOLD, 64 << 20)
        mallopt(M_MMAP_THRESHOLD, 16 << 20)
        #endif
    }

    /// Bootstraps swift-metrics once for the process with a Prometheus registry,
    /// the one `/metrics` renders.
    static func bootstrapMetrics() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
            .seconds(30), .seconds(60),
        ]
        MetricsSystem.bootstrap(factory)
        return registry
    }
}

/// Loads a config and its rules, turning every failure into a one-line error.
func loadConfiguration(_ path: String) throws -> LoadedConfiguration {
    do {
        return try ConfigurationFiles.load(configPath: path)
    } catch let error as InvalidatorCore.ValidationError {
        throw CommandFailure(message: "invalid configuration:\n" + error.description)
    } catch {
        throw CommandFailure(message: "\(error)")
    }
}
