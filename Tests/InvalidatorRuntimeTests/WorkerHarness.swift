import Foundation
import InvalidatorCore
import InvalidatorKafka
import InvalidatorRuntime
import Logging
import ServiceLifecycle
import TestSupport
import Testing

/// A mock Kafka cluster, a real redis-server and a config wired to both.
final class WorkerHarness: Sendable {
    static let rules = """
        rules:
          - name: user
            match: { entity: user }
            delete: ["user:{id}"]
          - name: slow-page
            match: { entity: page }
            delete: ["page:{id}"]
            redelete_after: 2s
          - name: sessions
            match: { entity: session }
            patterns: ["session:{id}:*"]
          - name: tenant
            match: { entity: org }
            delete: ["org:{tenant}:{id}"]
        """

    let kafka: KafkaMockCluster
    let redis: RedisServer
    /// Between the worker and `redis`, when made with a reply delay.
    let network: TCPProxy?
    let deadLetterRedis: RedisServer
    let topic = "entity-changes"
    let partitions: Int32
    let group: String
    let folder: URL

    /// - Parameters:
    ///   - deadLetterMaxRecords: `dead_letters.max_records`; nil leaves it to its default.
    ///   - deadLetterServerArguments: extra `redis-server` arguments of the dead-letter node.
    ///   - rules: the rules file.
    ///   - primarySettings: more keys of the `primary` pool, each written `, key: value`.
    ///   - replyDelay: how late every reply of `redis` reaches the worker; nil: no proxy.
    ///   - drainTimeout: `shutdown.drain_timeout`.
    init(
        partitions: Int32 = 4, retryAttempts: Int = 2, initialBackoff: String = "10ms", group: String = "invalidator-\(UUID().uuidString.prefix(8))",
        deadLetterMaxRecords: Int? = nil, deadLetterServerArguments: [String] = [], rules: String = WorkerHarness.rules,
        primarySettings: String = "", replyDelay: Duration? = nil, drainTimeout: String = "5s"
    ) async throws {
        self.partitions = partitions
        self.group = group
        kafka = try KafkaMockCluster(brokers: 1)
        try kafka.createTopic(topic, partitions: partitions)
        redis = try await RedisServer.start()
        network = try replyDelay.map { [redis] delay in
            let proxy = try TCPProxy(to: redis.port)
            proxy.delayReplies(by: delay)
            return proxy
        }
        deadLetterRedis = try await RedisServer.start(deadLetterServerArguments)
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("invalidator-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try rules.write(to: folder.appendingPathComponent("rules.yaml"), atomically: true, encoding: .utf8)
        let config = """
            sources:
              kafka:
                brokers: "\(kafka.bootstrapServers)"
                topics: ["\(topic)"]
                group: \(group)
                properties:
                  fetch.wait.max.ms: "5"
                  session.timeout.ms: "6000"
            pools:
              primary: { nodes: ["\(network?.endpoint ?? redis.endpoint)"], command_timeout: 5s, connect_timeout: 5s\(primarySettings) }
              dead: { nodes: ["\(deadLetterRedis.endpoint)"], connect_timeout: 5s }
            rules: rules.yaml
            retry: { attempts: \(retryAttempts), initial_backoff: \(initialBackoff), max_backoff: 10s }
            dead_letters: { pool: dead, stream: "dead-letters"\(deadLetterMaxRecords.map { ", max_records: \($0)" } ?? "") }
            shutdown: { drain_timeout: \(drainTimeout) }
            """
        try config.write(to: configPath, atomically: true, encoding: .utf8)
    }

    deinit {
        kafka.close()
        try? FileManager.default.removeItem(at: folder)
    }

    var configPath: URL { folder.appendingPathComponent("invalidator.yaml") }

    /// Pools only used for the rules; the dead pool gets nothing but dead letters.
    func makeWorker(observability: WorkerObservability = WorkerObservability()) throws -> Worker {
        let loaded = try ConfigurationFiles.load(configPath: configPath.path, environment: [:])
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        return try Worker(loaded: loaded, workerID: "test-worker", observability: observability, logger: logger)
    }

    func produce(_ events: [String], partition: Int32? = nil) async throws {
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(brokers: kafka.bootstrapServers), logger: Logger(label: "producer"))
        for (index, event) in events.enumerated() {
            try await producer.send(KafkaProducerRecord(
                topic: topic, partition: partition ?? Int32(index) % partitions, value: Array(event.utf8)))
        }
        try await producer.flush()
        await producer.close()
    }

    /// The group's committed offsets, summed over partitions.
    func committedTotal() async throws -> Int64 {
        try await committedOffsets().values.reduce(0) { $0 + max($1, 0) }
    }

    /// The group's committed offset (next to read) per partition; negative when none.
    func committedOffsets() async throws -> [Int32: Int64] {
        let offsets = try await KafkaConsumer.committed(
            by: group, brokers: kafka.bootstrapServers, partitions: (0..<partitions).map { TopicPartition(topic, $0) }, logger: Logger(label: "probe"))
        return Dictionary(uniqueKeysWithValues: offsets.map { ($0.key.partition, $0.value) })
    }

    func deadLetterReasons() throws -> [String] {
        let output = try deadLetterRedis.call("XRANGE", "dead-letters", "-", "+")
        let lines = output.split(separator: "\n").map(String.init)
        return lines.indices.filter { lines[$0] == "reason" && $0 + 1 < lines.count }.map { lines[$0 + 1] }
    }
}

/// Runs services until `stop()`; the same ServiceGroup calls a process's SIGTERM would.
final class RunningWorker: Sendable {
    let worker: Worker
    private let group: ServiceGroup
    private let task: Task<Void, any Error>

    init(_ worker: Worker) {
        self.worker = worker
        let group = worker.makeServiceGroup()
        self.group = group
        task = Task { try await group.run() }
    }

    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await task.value
    }
}

func seedKeys(_ server: RedisServer, _ keys: [String]) async throws {
    try await server.seed(keys)
}
