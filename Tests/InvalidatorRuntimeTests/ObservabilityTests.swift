import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import InvalidatorCore
import InvalidatorKafka
import InvalidatorRuntime
import Logging
import Prometheus
import Synchronization
import TestDoubles
import TestSupport
import Testing

@Suite(.timeLimit(.minutes(2))) struct ObservabilityTests {
    @Test func metricsShowTrafficWithItsLabels() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        try await seedKeys(harness.redis, ["user:1", "user:2", "session:9:a"])
        try await harness.produce([
            #"{"entity":"user","id":"1","op":"update","occurred_at":"2020-01-01T00:00:00Z"}"#,
            #"{"entity":"user","id":"2","op":"update"}"#,
            #"{"entity":"session","id":"9","op":"delete"}"#,
            #"{"entity":"user","id":"#,                    // not JSON: dead-lettered
            #"{"entity":"invoice","id":"1","op":"update"}"#, // no rule: skipped
        ])
        let observed = try ObservedWorker(harness)
        let port = try await observed.port()
        #expect(try await eventually { try existingKeys(harness.redis, ["user:1", "user:2", "session:9:a"]) == 0 })
        #expect(try await eventually { observed.value(MetricName.events, ["source": "kafka", "result": "skipped"]) == 1 })
        // The pattern event is applied, and counted, in the background stage.
        #expect(try await eventually { observed.value(MetricName.events, ["source": "kafka", "result": "applied"]) == 3 })

        let (status, body) = try await httpGet(port: port, path: "/metrics")
        #expect(status == 200)
        let scraped = PrometheusText(body)
        #expect(scraped.value(MetricName.events, ["source": "kafka", "result": "applied"]) == 3)
        #expect(scraped.value(MetricName.events, ["source": "kafka", "result": "dead_lettered"]) == 1)
        #expect(scraped.value(MetricName.events, ["source": "kafka", "result": "skipped"]) == 1)
        let node = harness.redis.endpoint
        #expect(scraped.value(MetricName.operations, ["pool": "primary", "node": node, "kind": "delete", "result": "ok"]) == 2)
        #expect(scraped.value(MetricName.operations, ["pool": "primary", "node": node, "kind": "pattern", "result": "ok"]) == 1)
        // Three applied events, one from 2020: the histogram counts them and its sum is years.
        #expect(scraped.value(MetricName.endToEndLatency + "_count", [:]) == 3)
        #expect((scraped.value(MetricName.endToEndLatency + "_sum", [:]) ?? 0) > 100_000_000)
        // The pattern's walk: at least the key it removed scanned, one duration recorded.
        #expect((scraped.value(MetricName.patternKeysScanned, ["pool": "primary", "node": node]) ?? 0) >= 1)
        #expect(scraped.value(MetricName.patternWalkSeconds + "_count", ["pool": "primary", "node": node]) == 1)
        // The pattern event finishes in the background stage, just after its key is gone.
        #expect(try await eventually { observed.value(MetricName.inFlightEvents, [:]) == 0 })
        #expect(try await eventually { observed.value(MetricName.nodeUp, ["pool": "primary", "node": node]) == 1 })
        #expect(try await eventually {
            observed.value(MetricName.consumerLag, ["topic": harness.topic, "partition": "0"]) == 0
        })
        try await observed.running.stop()
    }

    @Test func failedOperationsAndTheirRetriesAreCounted() async throws {
        let harness = try await WorkerHarness(partitions: 1, retryAttempts: 3)
        harness.redis.kill()
        try await harness.produce([#"{"entity":"user","id":"1","op":"update"}"#])
        let observed = try ObservedWorker(harness)
        let node = harness.redis.endpoint
        #expect(try await eventually {
            observed.value(MetricName.operations, ["pool": "primary", "node": node, "kind": "delete", "result": "failed"]) == 1
        })
        #expect(observed.value(MetricName.retries, ["pool": "primary", "node": node]) == 2)
        // Events are counted once their dead letters are durable, a moment after the operations.
        #expect(try await eventually { observed.value(MetricName.events, ["source": "kafka", "result": "dead_lettered"]) == 1 })
        #expect(try await eventually { observed.value(MetricName.nodeUp, ["pool": "primary", "node": node]) == 0 })
        try await observed.running.stop()
    }

    @Test func readyOnlyWhileEveryPoolAnswers() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        harness.redis.kill()
        let observed = try ObservedWorker(harness)
        let port = try await observed.port()
        #expect(try await httpGet(port: port, path: "/healthz").status == 200, "a pool that does not answer is no stall")
        #expect(try await eventually {
            let (status, body) = try await httpGet(port: port, path: "/readyz")
            return status == 503 && body.contains("pool primary does not answer PING on \(harness.redis.endpoint)")
        })
        try await harness.redis.restart()
        #expect(try await eventually { try await httpGet(port: port, path: "/readyz") == (200, "ready\n") })
        #expect(try await httpGet(port: port, path: "/nothing").status == 404)
        try await observed.running.stop()
    }

    /// A dead-letter write that hangs (no error, no retry) stalls the Kafka loop:
    /// `/healthz` names it and the log says so, then both recover once the write returns.
    @Test func healthzNamesAStalledLoopUntilItMovesAgain() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        let store = ControlledDeadLetterStore()
        let capture = LogCapture()
        let observed = try ObservedWorker(
            harness, logger: Logger(label: "test") { _ in CapturingLogHandler(capture: capture) }, stallTimeout: .seconds(4),
            deadLetters: store)
        let port = try await observed.port()
        // Idle for longer than the stall timeout: the loop keeps going round.
        #expect(try await holds(for: .seconds(6)) { try await httpGet(port: port, path: "/healthz").status == 200 })
        #expect(try await httpGet(port: port, path: "/healthz").body.hasPrefix("alive:\n- kafka: last heartbeat "))

        store.mode = .hangs
        try await harness.produce([#"{"entity":"user","id":"#]) // not JSON: dead-lettered
        #expect(try await eventually {
            let (status, body) = try await httpGet(port: port, path: "/healthz")
            return status == 503 && body.hasPrefix("stalled:\n- kafka: no heartbeat for ")
                && body.hasSuffix(" (last: storing dead letters)\n")
        })
        #expect(try await eventually {
            capture.lines.contains { $0.hasPrefix("error processing loop stalled") && $0.contains("loop=kafka") }
        })
        store.mode = .works
        #expect(try await eventually { try await httpGet(port: port, path: "/healthz").status == 200 })
        #expect(store.stored == 1)
        #expect(try await eventually { capture.lines.contains { $0.hasPrefix("info processing loop no longer stalled") } })
        try await observed.running.stop()
    }

    /// Work in progress is no stall: a dead-letter store that is down is retried,
    /// each attempt a heartbeat, for several stall timeouts.
    @Test func aDeadLetterStoreBeingRetriedIsNoStall() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        let store = ControlledDeadLetterStore()
        store.mode = .fails
        let observed = try ObservedWorker(harness, stallTimeout: .seconds(4), deadLetters: store)
        let port = try await observed.port()
        try await harness.produce([#"{"entity":"user","id":"#])
        #expect(try await eventually { store.attempts > 0 })
        #expect(try await holds(for: .seconds(9)) { try await httpGet(port: port, path: "/healthz").status == 200 })
        #expect(store.attempts >= 5)
        store.mode = .works
        #expect(try await eventually { store.stored == 1 })
        try await observed.running.stop()
    }

    @Test func defaultStallTimeoutOutlastsOneRedisCallWithItsRetries() throws {
        var configuration = Configuration()
        configuration.pools = [PoolConfiguration(name: "primary", nodes: [HostPort(host: "127.0.0.1", port: 6379)])]
        func stallTimeout() throws -> Duration {
            LivenessMonitor.defaultStallTimeout(pools: PoolSet(configuration: configuration, logger: Logger(label: "test")).pools.map(\.configuration))
        }
        // 8 attempts of 2 s + 2 s, backoff ceilings 50 ms ... 3.2 s (6.35 s), then 30 s more.
        #expect(try stallTimeout() == .milliseconds(68_350))
        configuration.retry.attempts = 2
        #expect(try stallTimeout() == .seconds(60))
    }

    /// The worker counts its Redis stream of dead letters at start and after each write.
    @Test func deadLettersRemainingFollowsTheStream() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        for _ in 0..<2 {
            _ = try harness.deadLetterRedis.call("XADD", "dead-letters", "*", "reason", "invalid-json", "record", "{}")
        }
        let observed = try ObservedWorker(harness)
        let port = try await observed.port()
        #expect(try await eventually {
            PrometheusText(try await httpGet(port: port, path: "/metrics").body).value(DeadLetterMetrics.remaining, [:]) == 2
        })
        try await harness.produce([#"{"entity":"user","id":"#])
        #expect(try await eventually {
            PrometheusText(try await httpGet(port: port, path: "/metrics").body).value(DeadLetterMetrics.remaining, [:]) == 3
        })
        try await observed.running.stop()
    }

    @Test func connectivityCheckReportsEveryTarget() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        let loaded = try ConfigurationFiles.load(configPath: harness.configPath.path, environment: [:])
        let logger = Logger(label: "test")
        let ok = await ConnectivityCheck.run(loaded.configuration, kafkaTimeout: .seconds(5), logger: logger)
        #expect(ok.map(\.description).sorted() == [
            "dead-letter stream dead-letters on pool dead node \(harness.deadLetterRedis.endpoint): maxmemory-policy noeviction, appendonly no, save \"\"",
            "kafka brokers \(harness.kafka.bootstrapServers): ok",
            "redis pool dead node \(harness.deadLetterRedis.endpoint): ok",
            "redis pool primary node \(harness.redis.endpoint): ok",
        ])

        harness.redis.kill()
        var configuration = loaded.configuration
        configuration.sources.kafka?.brokers = "127.0.0.1:1"
        let failing = await ConnectivityCheck.run(configuration, kafkaTimeout: .seconds(2), logger: logger)
        let failed = failing.filter { !$0.isOK }.map(\.target).sorted()
        #expect(failed == ["kafka brokers 127.0.0.1:1", "redis pool primary node \(harness.redis.endpoint)"])
        #expect(failing.first { $0.target.contains("pool dead") }?.isOK == true)
        #expect(failing.allSatisfy { $0.isOK || $0.description.contains(": FAILED: ") })
    }

    /// A wrong Redis password and a SASL password: errors are logged (and
    /// dead-lettered), and neither secret appears in any log line or dead letter.
    @Test func secretsNeverReachLogsOrDeadLetters() async throws {
        let redisSecret = "redis-s3cret-\(UUID().uuidString.prefix(8))"
        let wrongSecret = "wrong-s3cret-\(UUID().uuidString.prefix(8))"
        let kafkaSecret = "sasl-s3cret-\(UUID().uuidString.prefix(8))"
        let protected = try await RedisServer.start(["--requirepass", redisSecret])
        let dead = try await RedisServer.start()
        let kafka = try KafkaMockCluster(brokers: 1)
        defer { kafka.close() }
        try kafka.createTopic("entity-changes", partitions: 1)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("invalidator-secrets-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let config = """
            sources:
              kafka:
                brokers: "\(kafka.bootstrapServers)"
                topics: ["entity-changes"]
                group: secrets
                properties:
                  security.protocol: SASL_PLAINTEXT
                  sasl.mechanism: PLAIN
                  sasl.username: invalidator
                  sasl.password: ${KAFKA_PASSWORD}
              redis_stream: { pool: dead, streams: ["changes"], group: g }
            pools:
              primary: { nodes: ["\(protected.endpoint)"], password: "${REDIS_PASSWORD}", command_timeout: 5s, connect_timeout: 5s }
              dead: { nodes: ["\(dead.endpoint)"], connect_timeout: 5s }
            rules:
              - { name: user, match: { entity: user }, pools: [primary], delete: ["user:{id}"] }
            retry: { attempts: 2, initial_backoff: 10ms, max_backoff: 10s }
            dead_letters: { pool: dead, stream: "dead-letters" }
            shutdown: { drain_timeout: 2s }
            """
        let configPath = folder.appendingPathComponent("invalidator.yaml")
        try config.write(to: configPath, atomically: true, encoding: .utf8)
        let loaded = try ConfigurationFiles.load(
            configPath: configPath.path, environment: ["REDIS_PASSWORD": wrongSecret, "KAFKA_PASSWORD": kafkaSecret])
        let capture = LogCapture()
        var logger = Logger(label: "test") { label in CapturingLogHandler(capture: capture) }
        logger.logLevel = .trace
        let worker = try Worker(loaded: loaded, workerID: "secrets", logger: logger)
        let running = RunningWorker(worker)
        _ = try dead.call("XADD", "changes", "*", "event", #"{"entity":"user","id":"1","op":"update"}"#)
        #expect(try await eventually { try dead.call("XLEN", "dead-letters") == "1" })
        // Connectivity check output carries errors too.
        let checks = await ConnectivityCheck.run(loaded.configuration, kafkaTimeout: .seconds(2), logger: logger)
        try await running.stop()

        let deadLetters = try dead.call("XRANGE", "dead-letters", "-", "+")
        let text = capture.lines.joined(separator: "\n") + "\n" + deadLetters + "\n" + checks.map(\.description).joined(separator: "\n")
        #expect(text.contains("WRONGPASS"), "the authentication failure is reported")
        #expect(capture.lines.contains { $0.lowercased().contains("sasl") || $0.contains("Kafka") }, "the Kafka side logged its failure")
        for secret in [redisSecret, wrongSecret, kafkaSecret] {
            #expect(!text.contains(secret), "a secret leaked into logs, dead letters or check output")
        }
        #expect(checks.contains { $0.target.contains("pool primary") && !$0.isOK })
    }
}

// MARK: Support

/// A worker with Prometheus metrics in a registry of its own and an HTTP listener on a free port.
struct ObservedWorker {
    let registry = PrometheusCollectorRegistry()
    let running: RunningWorker

    init(
        _ harness: WorkerHarness, logger: Logger? = nil, stallTimeout: Duration? = nil,
        rulesReloadSettle: Duration = .milliseconds(300), deadLetters: (any DeadLetterStore)? = nil
    ) throws {
        let registry = registry
        let observability = WorkerObservability(
            metrics: WorkerMetrics(factory: PrometheusMetricsFactory(registry: registry)), serveHTTP: true,
            listen: HostPort(host: "127.0.0.1", port: 0), renderMetrics: { registry.emitToString() },
            healthCheckInterval: .milliseconds(200), rulesReloadInterval: .milliseconds(100),
            rulesReloadSettle: rulesReloadSettle, stallTimeout: stallTimeout)
        let loaded = try ConfigurationFiles.load(configPath: harness.configPath.path, environment: [:])
        var logger = logger ?? Logger(label: "test")
        logger.logLevel = .info
        running = RunningWorker(try Worker(
            loaded: loaded, deadLetters: deadLetters, workerID: "test-worker", observability: observability, logger: logger))
    }

    func port() async throws -> Int {
        _ = try await eventually { (running.worker.httpServer?.boundPort ?? 0) > 0 }
        return running.worker.httpServer?.boundPort ?? 0
    }

    func value(_ name: String, _ labels: [String: String]) -> Double? {
        PrometheusText(registry.emitToString()).value(name, labels)
    }
}

/// Samples of a Prometheus text exposition.
struct PrometheusText {
    var samples: [(name: String, labels: [String: String], value: Double)] = []

    init(_ text: String) {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            let series = line[..<space]
            var labels: [String: String] = [:]
            let name: String
            if let brace = series.firstIndex(of: "{") {
                name = String(series[..<brace])
                let inner = series[series.index(after: brace)..<(series.lastIndex(of: "}") ?? series.endIndex)]
                for pair in inner.split(separator: ",") {
                    let parts = pair.split(separator: "=", maxSplits: 1)
                    guard parts.count == 2 else { continue }
                    labels[String(parts[0])] = String(parts[1].dropFirst().dropLast())
                }
            } else {
                name = String(series)
            }
            samples.append((name, labels, value))
        }
    }

    /// The sample with exactly these labels.
    func value(_ name: String, _ labels: [String: String]) -> Double? {
        samples.first { $0.name == name && $0.labels == labels }?.value
    }
}

/// A GET with URLSession; the status and the body as text.
func httpGet(port: Int, path: String) async throws -> (status: Int, body: String) {
    let url = URL(string: "http://127.0.0.1:\(port)\(path)")!
    let (data, response) = try await URLSession.shared.data(from: url)
    return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
}
