import Foundation
import InvalidatorCore
import InvalidatorRedis
import Logging
import ServiceLifecycle
import UnixSignals

/// The long-running worker: every configured source feeding one pipeline.
package final class Worker: Sendable {
    package let pools: PoolSet
    package let pipeline: EventPipeline
    package let kafka: KafkaEventSource?
    package let redisPubSub: RedisPubSubSource?
    package let redisStream: RedisStreamSource?
    /// Reloads the rules when their files change; nil for inline rules or when turned off.
    package let rulesReloader: RulesReloader?
    /// PINGs the pools for `invalidator_node_up` and `/readyz`.
    package let healthMonitor: HealthMonitor
    /// The processing loops' heartbeats, behind `/healthz`.
    package let liveness: LivenessMonitor
    /// Sets `invalidator_dead_letters_remaining` and `invalidator_dead_letter_store_bytes`,
    /// and warns at start when the node may evict or lose the stream; nil unless the
    /// store is a Redis stream and `WorkerObservability.serveHTTP`.
    let deadLetterBacklog: DeadLetterBacklog?
    /// `/metrics`, `/healthz`, `/readyz`; nil unless `WorkerObservability.serveHTTP`.
    package let httpServer: ObservabilityServer?
    package let metrics: WorkerMetrics
    /// Closes the webhook client once the sources drained; nil without `webhooks:`.
    let webhookClient: WebhookClientService?
    /// Canary rounds every `canary.interval`; nil unless `canary.enabled`.
    package let canary: CanaryService?
    private let configuration: Configuration
    private let logger: Logger

    /// A worker id for dead letters: the pod name on Kubernetes, else host and pid.
    package static var defaultWorkerID: String {
        let environment = ProcessInfo.processInfo.environment
        return environment["POD_NAME"] ?? "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)"
    }

    /// - Parameter loaded: as `ConfigurationFiles.load` returns it, which has checked
    ///   everything about the config; nothing here checks it again.
    /// - Throws: ``ConfigurationProblem`` for an empty rules set without
    ///   `allow_empty_rules` (valid, so `validate` only warns, but `run` refuses it),
    ///   or the error of creating a Kafka producer (the dead-letter store's, the canary's).
    package init(
        loaded: LoadedConfiguration, deadLetters: (any DeadLetterStore)? = nil,
        workerID: String = Worker.defaultWorkerID, observability: WorkerObservability = WorkerObservability(),
        webhooks: (any WebhookDelivering)? = nil, logger: Logger
    ) throws {
        let configuration = loaded.configuration
        guard !loaded.rules.rules.isEmpty || configuration.allowEmptyRules else {
            throw ConfigurationProblem(
                "the rules set is empty, so no event would invalidate anything; fix the rules files, or set allow_empty_rules: true to run anyway")
        }
        self.configuration = configuration
        self.logger = logger
        let pools = PoolSet(configuration: configuration, logger: logger)
        self.pools = pools
        let metrics = observability.metrics
        self.metrics = metrics
        metrics.rulesInForce(loaded.rules.rules.count)
        let liveness = LivenessMonitor(
            stallTimeout: observability.stallTimeout
                ?? LivenessMonitor.defaultStallTimeout(pools: pools.pools.map(\.configuration)))
        self.liveness = liveness
        var store = try deadLetters ?? Self.deadLetterStore(configuration, pools: pools, logger: logger)
        // Like the PINGs behind `invalidator_node_up`, only when metrics are served.
        let backlog = observability.serveHTTP ? DeadLetterBacklog(store: store, metrics: metrics, logger: logger) : nil
        if let backlog { store = BacklogCountingStore(store: store, backlog: backlog) }
        self.deadLetterBacklog = backlog
        if webhooks == nil, !configuration.webhooks.isEmpty {
            logger.warning("the config has webhooks but the worker was given no webhook client: their items will be dead-lettered")
        }
        self.webhookClient = webhooks.map(WebhookClientService.init)
        let pipeline = EventPipeline(
            rules: RulesState(configuration.planner(rules: loaded.rules)),
            pools: pools, deadLetters: store, workerID: workerID, logger: logger, metrics: metrics,
            webhooks: webhooks)
        self.pipeline = pipeline
        self.kafka = configuration.sources.kafka.map {
            KafkaEventSource(
                configuration: $0, pipeline: pipeline, drainTimeout: configuration.shutdown.drainTimeout, metrics: metrics,
                liveness: liveness, logger: logger)
        }
        self.redisPubSub = configuration.sources.redisPubSub.map {
            RedisPubSubSource(
                configuration: $0, pool: pools.configuredPool($0.pool),
                pipeline: pipeline, drainTimeout: configuration.shutdown.drainTimeout, metrics: metrics, liveness: liveness,
                logger: logger)
        }
        self.redisStream = configuration.sources.redisStream.map {
            RedisStreamSource(
                configuration: $0, pool: pools.configuredPool($0.pool),
                pipeline: pipeline, consumer: workerID, drainTimeout: configuration.shutdown.drainTimeout,
                // The reading loop beats between reads: a read never outlasts half the stall timeout.
                blockTime: min($0.block, liveness.stallTimeout / 2), liveness: liveness, logger: logger)
        }
        self.rulesReloader = observability.rulesReloadInterval.flatMap { interval in
            loaded.rulesFiles.isEmpty ? nil : RulesReloader(
                paths: loaded.rulesFiles, rules: pipeline.rules, configuration: configuration, interval: interval,
                settleInterval: observability.rulesReloadSettle,
                loadedContents: loaded.rulesContents.count == loaded.rulesFiles.count ? loaded.rulesContents : nil,
                metrics: metrics, logger: logger)
        }
        let sources: [(name: String, source: any SubscribableSource)] = [
            kafka.map { ("kafka", $0 as any SubscribableSource) },
            redisPubSub.map { ("redis_pubsub", $0 as any SubscribableSource) },
            redisStream.map { ("redis_stream", $0 as any SubscribableSource) },
        ].compactMap { $0 }
        let monitor = HealthMonitor(
            pools: pools, sources: { sources.map { ($0.name, $0.source.isSubscribed) } }, liveness: liveness,
            interval: observability.healthCheckInterval ?? configuration.http.healthCheckInterval, metrics: metrics, logger: logger)
        self.healthMonitor = monitor
        let canary = try configuration.canary.enabled ? CanaryService(
            prober: CanaryProber(configuration: configuration, pools: pools, workerID: workerID, logger: logger),
            metrics: metrics, logger: logger) : nil
        self.canary = canary
        if observability.serveHTTP {
            self.httpServer = ObservabilityServer(
                listen: observability.listen ?? configuration.http.listen, renderMetrics: observability.renderMetrics,
                readiness: { monitor.readiness }, loops: { liveness.loops }, canaryProblems: { canary?.healthProblems ?? [] },
                logger: logger)
        } else {
            self.httpServer = nil
        }
    }

    /// Ready once every source is subscribed and every pool answered the last PING.
    package var readiness: Readiness { healthMonitor.readiness }

    /// The store `dead_letters` names. Throws only what creating a Kafka producer throws.
    static func deadLetterStore(_ configuration: Configuration, pools: PoolSet, logger: Logger) throws -> any DeadLetterStore {
        switch configuration.validDeadLetters {
        case .redisStream(let pool, let stream):
            return RedisStreamDeadLetterStore(
                pool: pools.configuredPool(pool), stream: stream, maxRecords: configuration.deadLetterMaxRecords, logger: logger)
        case .kafkaTopic(let topic, _):
            let kafka = configuration.validKafkaSource
            return try KafkaDeadLetterStore(brokers: kafka.brokers, topic: topic, properties: kafka.properties)
        }
    }

    package var services: [any Service] {
        // Shut down in reverse order: the sources drain first, while the HTTP
        // listener still serves metrics and probes and the webhook client is open.
        let observability: [(any Service)?] = [
            webhookClient, httpServer, httpServer == nil ? nil : healthMonitor, deadLetterBacklog, rulesReloader,
        ]
        let sources: [(any Service)?] = [kafka, redisPubSub, redisStream]
        // Last, so it stops first: no canary is emitted into draining sources.
        return (observability + sources + [canary]).compactMap { $0 }
    }

    /// The services in a group whose graceful shutdown turns into cancellation
    /// once the drain timeout has passed, so a batch stuck on an unavailable
    /// dead-letter store cannot hold shutdown forever (it is then not committed).
    package func makeServiceGroup() -> ServiceGroup {
        var configuration = ServiceGroupConfiguration(
            services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
            logger: logger)
        configuration.maximumGracefulShutdownDuration = self.configuration.shutdown.drainTimeout + .seconds(1)
        return ServiceGroup(configuration: configuration)
    }

    /// Runs until SIGTERM or SIGINT, then drains and exits. A second signal
    /// cancels at once; only finished work is committed.
    package func run() async throws {
        let group = makeServiceGroup()
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            tasks.addTask { [logger] in
                var signalCount = 0
                for await signal in await UnixSignalsSequence(trapping: .sigterm, .sigint) {
                    signalCount += 1
                    if signalCount == 1 {
                        logger.info("shutting down: draining in-flight work", metadata: ["signal": "\(signal)"])
                        await group.triggerGracefulShutdown()
                    } else {
                        logger.warning("second signal: stopping now, committing only finished work")
                        throw CancellationError()
                    }
                }
            }
            defer { tasks.cancelAll() }
            try await tasks.next()
        }
        await pools.close()
    }
}

/// A configuration that is valid but that `run` refuses: an empty rules set
/// without `allow_empty_rules` (which `validate` only warns about).
package struct ConfigurationProblem: Error, CustomStringConvertible, Sendable {
    package var description: String
    package init(_ description: String) { self.description = description }
}
