import Foundation
import InvalidatorCore
import InvalidatorKafka
import InvalidatorRuntime
import Logging
import TestDoubles
import TestSupport
import Testing

/// A mock Kafka cluster, a real redis-server, and configs whose three sources
/// (a topic, a stream, a channel) carry canaries to the `primary` pool.
final class CanaryFixture: Sendable {
    let kafka: KafkaMockCluster
    let redis: RedisServer
    let folder: URL
    let group = "canary-\(UUID().uuidString.prefix(8))"

    init(partitions: Int32 = 1, redisArguments: [String] = []) async throws {
        kafka = try KafkaMockCluster(brokers: 1)
        for topic in ["changes", "other"] { try kafka.createTopic(topic, partitions: partitions) }
        redis = try await RedisServer.start(redisArguments)
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("invalidator-canary-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    deinit {
        kafka.close()
        try? FileManager.default.removeItem(at: folder)
    }

    /// Writes a config named `name` and returns its path.
    /// - Parameters:
    ///   - topic: the Kafka topic the worker consumes and the canary emits to.
    ///   - pool: the `primary` pool's settings inside its braces.
    @discardableResult
    func writeConfig(
        _ name: String = "invalidator.yaml", topic: String = "changes", canary: String = "{ enabled: true, interval: 1s, timeout: 3s }",
        pool: String? = nil
    ) throws -> String {
        let config = """
            sources:
              kafka:
                brokers: "\(kafka.bootstrapServers)"
                topics: ["\(topic)"]
                group: \(group)
                format: debezium
                properties: { fetch.wait.max.ms: "5", session.timeout.ms: "6000" }
              redis_stream: { pool: primary, streams: ["changes-stream"], block: 100ms }
              redis_pubsub: { pool: primary, channels: ["changes-channel"] }
            pools:
              primary: { \(pool ?? "nodes: [\"\(redis.endpoint)\"]"), command_timeout: 5s, connect_timeout: 5s }
            rules:
              - { name: user, match: { entity: user }, delete: ["user:{id}"] }
            retry: { attempts: 1, initial_backoff: 10ms, max_backoff: 10ms }
            dead_letters: { pool: primary, stream: "dead-letters" }
            canary: \(canary)
            """
        let path = folder.appendingPathComponent(name).path
        try config.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func makeWorker(_ path: String, workerID: String = "worker-1", metrics: AllValuesMetrics) throws -> Worker {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return try Worker(
            loaded: ConfigurationFiles.load(configPath: path, environment: [:]), workerID: workerID,
            observability: WorkerObservability(metrics: WorkerMetrics(factory: metrics)), logger: logger)
    }

    /// One round of a prober that is not a worker, as `invalidator probe` runs it.
    func probe(_ path: String) async throws -> [CanaryResult] {
        let configuration = try ConfigurationFiles.load(configPath: path, environment: [:]).configuration
        let pools = PoolSet(configuration: configuration, logger: Logger(label: "probe"))
        let prober = try CanaryProber(configuration: configuration, pools: pools, workerID: "prober", logger: Logger(label: "probe"))
        let results = await prober.round()
        await prober.close()
        await pools.close()
        return results
    }
}

extension RunningWorker {
    /// Waits until the worker's sources are subscribed: a canary published on a channel before then reaches nobody.
    func subscribed() async throws {
        let subscribed = try await eventually {
            worker.redisPubSub?.isSubscribed != false && worker.kafka?.isSubscribed != false
        }
        try #require(subscribed)
    }
}

@Suite(.timeLimit(.minutes(3))) struct CanaryTests {
    static let sources = ["kafka:changes", "redis_stream:changes-stream", "redis_pubsub:changes-channel"]

    func latencies(_ metrics: AllValuesMetrics, source: String) -> [Int64] {
        metrics.recorded(MetricName.canarySeconds, ["source": source, "pool": "primary"])
    }

    func failures(_ metrics: AllValuesMetrics, source: String) -> Int64 {
        metrics.counter(MetricName.canaryFailures, ["source": source, "pool": "primary"])
    }

    @Test func aHealthyWorkerPassesThroughEverySourceWithPlausibleLatencies() async throws {
        let fixture = try await CanaryFixture()
        let metrics = AllValuesMetrics()
        let running = RunningWorker(try fixture.makeWorker(fixture.writeConfig(), metrics: metrics))
        let passedEverywhere = try await eventually(timeout: .seconds(60)) {
            Self.sources.allSatisfy { latencies(metrics, source: $0).count >= 10 }
        }
        try await running.stop()
        #expect(passedEverywhere)
        for source in Self.sources {
            let values = latencies(metrics, source: source).sorted()
            // Every success is under the timeout; once the group has formed (the last five
            // rounds), the median is well under a second.
            #expect(values.allSatisfy { $0 > 0 && $0 < 3_000_000_000 }, "\(source): \(values)")
            let settled = latencies(metrics, source: source).suffix(5).sorted()
            let median = settled.isEmpty ? 0 : settled[settled.count / 2]
            #expect(median < 1_000_000_000, "\(source): \(settled)")
            print("canary latency \(source): median \(Double(median) / 1e6) ms, max \(Double(values.last ?? 0) / 1e6) ms over \(values.count) rounds")
        }
        // Canary keys go; none is left behind.
        #expect(try fixture.redis.keys(matching: "invalidator:canary:*").isEmpty)
    }

    @Test func aProberOnAnotherTopicFailsWithinOneTimeout() async throws {
        let fixture = try await CanaryFixture()
        let running = RunningWorker(try fixture.makeWorker(fixture.writeConfig(canary: "{ enabled: false }"), metrics: AllValuesMetrics()))
        try await running.subscribed()
        let wrongTopic = try fixture.writeConfig("prober.yaml", topic: "other", canary: "{ timeout: 2s }")
        let start = ContinuousClock.now
        let results = try await fixture.probe(wrongTopic)
        let kafka = try #require(results.first { $0.source.kind == .kafka })
        #expect(!kafka.passed)
        #expect(kafka.failure?.contains("still on \(fixture.redis.endpoint)") == true, "\(kafka)")
        #expect(ContinuousClock.now - start < .seconds(15), "the 2 s timeout, and the time to write and emit")
        try await running.stop()
        // The Redis sources of the same prober reach the worker.
        #expect(results.filter { $0.source.kind != .kafka }.allSatisfy { $0.passed }, "\(results)")
    }

    @Test func aNodeThatRefusesDeletesFailsTheCanaryAndHealthz() async throws {
        let fixture = try await CanaryFixture()
        _ = try fixture.redis.call("ACL", "SETUSER", "cache", "on", ">secret", "~*", "&*", "+@all", "-unlink", "-del")
        let path = try fixture.writeConfig(
            canary: "{ enabled: true, interval: 1s, timeout: 1s, fail_healthz_after: 2 }",
            pool: "nodes: [\"redis://cache:secret@\(fixture.redis.endpoint)\"]")
        let metrics = AllValuesMetrics()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let worker = try Worker(
            loaded: ConfigurationFiles.load(configPath: path, environment: [:]), workerID: "worker-1",
            observability: WorkerObservability(
                metrics: WorkerMetrics(factory: metrics), serveHTTP: true, listen: HostPort(host: "127.0.0.1", port: 0)),
            logger: logger)
        let running = RunningWorker(worker)
        let failed = try await eventually {
            Self.sources.allSatisfy { failures(metrics, source: $0) >= 2 }
        }
        #expect(failed)
        let port = try #require(worker.httpServer?.boundPort)
        let health = try HTTPProbe.get(port: port, path: "/healthz")
        try await running.stop()
        #expect(health.status == 503)
        #expect(health.body.hasPrefix("unhealthy:\n"), "\(health.body)")
        #expect(health.body.contains("- canary kafka:changes: "), "\(health.body)")
        #expect(Self.sources.allSatisfy { latencies(metrics, source: $0).isEmpty })
    }

    @Test func aDeadCanaryPoolFailsTheRoundAtOnce() async throws {
        let fixture = try await CanaryFixture()
        // A long timeout: the round before the kill must pass even while the group still forms.
        let path = try fixture.writeConfig(canary: "{ timeout: 30s }")
        let running = RunningWorker(try fixture.makeWorker(path, metrics: AllValuesMetrics()))
        try await running.subscribed()
        let before = try await fixture.probe(path)
        #expect(before.allSatisfy { $0.passed }, "\(before)")
        fixture.redis.kill()
        let results = try await fixture.probe(path)
        try await running.stop()
        #expect(results.count == 3)
        #expect(results.allSatisfy { $0.failure?.contains("writing the canary key on pool 'primary' failed") == true }, "\(results)")
    }

    @Test func twoWorkersOfAGroupApplyEachOthersCanaries() async throws {
        let fixture = try await CanaryFixture(partitions: 4)
        // A long timeout: the group rebalances while the second worker joins.
        let path = try fixture.writeConfig(canary: "{ enabled: true, interval: 1s, timeout: 30s }")
        let metrics = [AllValuesMetrics(), AllValuesMetrics()]
        let workers = try metrics.indices.map { RunningWorker(try fixture.makeWorker(path, workerID: "worker-\($0)", metrics: metrics[$0])) }
        let bothApplied = try await eventually(timeout: .seconds(60)) {
            metrics.allSatisfy {
                $0.counter(MetricName.keysRemoved, ["rule": "canary"]) > 0 && latencies($0, source: "kafka:changes").count >= 5
            }
        }
        for worker in workers { try await worker.stop() }
        #expect(bothApplied)
        // Each applies part of the topic's canaries, and every canary either emitted passed.
        for worker in metrics { #expect(failures(worker, source: "kafka:changes") == 0) }
    }

    /// `invalidator probe` as a deploy smoke test runs it.
    func probeCommand(_ arguments: [String]) throws -> (exit: ChildProcess.Exit?, output: String) {
        let result = try ChildProcess.run(
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("invalidator").path,
            ["probe"] + arguments + ["--log-level", "critical"], separateStandardError: true)
        return (result.exit, result.standardOutput)
    }

    @Test func probeExitsZeroWithARunningWorkerAndOneWithout() async throws {
        let fixture = try await CanaryFixture()
        let path = try fixture.writeConfig(canary: "{ enabled: false }")
        #expect(try probeCommand(["--config", path, "--timeout", "2s"]).exit == ChildProcess.Exit(status: 1, bySignal: false))
        #expect(try probeCommand(["--config", path, "--timeout", "soon"]).exit == ChildProcess.Exit(status: 2, bySignal: false))
        let running = RunningWorker(try fixture.makeWorker(path, metrics: AllValuesMetrics()))
        try await running.subscribed()
        // A long timeout: the group may still be forming.
        let (exit, output) = try probeCommand(["--config", path, "--timeout", "30s", "--format", "json"])
        try await running.stop()
        #expect(exit == .success, "\(output)")
        #expect(output.contains(#""passed": true"#) && output.contains(#""source": "redis_pubsub:changes-channel""#), "\(output)")
    }
}
