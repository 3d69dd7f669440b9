import InvalidatorCore
import InvalidatorKafka
import InvalidatorRedis
import Logging

/// `validate --check-connectivity`: can this config reach what it names?
package enum ConnectivityCheck {
    package struct Result: Sendable, CustomStringConvertible {
        /// What was checked, e.g. `redis pool primary node 10.0.0.1:6379`.
        package var target: String
        /// nil when it answered.
        package var error: String?
        /// What it answered, when more than "ok" is worth saying.
        package var detail: String?
        /// What works but puts something at risk; no failure.
        package var warnings: [String] = []
        package var isOK: Bool { error == nil }
        package var description: String { "\(target): " + (error.map { "FAILED: \($0)" } ?? detail ?? "ok") }
    }

    /// PINGs every node of every pool (in a cluster, every node the slot map
    /// lists), reads the eviction policy and persistence of the node holding a Redis
    /// stream of dead letters (see ``DeadLetterNodeSettings``), and reads the group's
    /// committed offsets from the Kafka brokers, which needs the brokers and the
    /// group coordinator. Credentials are used, never shown.
    package static func run(_ configuration: Configuration, kafkaTimeout: Duration = .seconds(5), logger: Logger) async -> [Result] {
        var results: [Result] = []
        let pools = PoolSet(configuration: configuration, logger: logger)
        var answering: Set<String> = []
        for pool in pools.pools {
            let name = pool.configuration.name
            let pings = await pool.ping()
            if pings.values.allSatisfy({ $0 == nil }) { answering.insert(name) }
            for (node, error) in pings.sorted(by: { $0.key < $1.key }) {
                results.append(Result(target: "redis pool \(name) node \(node)", error: error.map { "\($0)" }))
            }
        }
        // A pool that did not answer PING is reported above; its settings would only wait out retries.
        if case .redisStream(let poolName, let stream)? = configuration.deadLetters, answering.contains(poolName),
           let pool = pools.pool(named: poolName) {
            results.append(await checkDeadLetterNode(pool, stream: stream))
        }
        await pools.close()
        if let kafka = configuration.sources.kafka {
            results.append(await checkKafka(kafka, timeout: kafkaTimeout, logger: logger))
        }
        return results
    }

    static func checkDeadLetterNode(_ pool: RedisPool, stream: String) async -> Result {
        let target = "dead-letter stream \(stream) on pool \(pool.configuration.name)"
        do {
            let settings = try await DeadLetterNodeSettings.read(pool: pool, stream: stream)
            return Result(target: target + " node \(settings.node)", detail: settings.summary, warnings: settings.warnings)
        } catch {
            return Result(target: target, error: "\(error)")
        }
    }

    static func checkKafka(_ kafka: KafkaSourceConfiguration, timeout: Duration, logger: Logger) async -> Result {
        let target = "kafka brokers \(kafka.brokers)"
        // librdkafka logs every failed connection attempt; the result says it once.
        var quiet = logger
        quiet.logLevel = .critical
        let consumer: KafkaConsumer
        do {
            // No topics: it does not join the group, so it causes no rebalance.
            consumer = try KafkaConsumer(
                configuration: KafkaConsumerConfiguration(
                    brokers: kafka.brokers, group: kafka.group, topics: [], properties: kafka.properties),
                logger: quiet)
        } catch {
            return Result(target: target, error: "\(error)")
        }
        let partitions = kafka.topics.map { TopicPartition($0, 0) }
        var failure: String?
        do {
            _ = try await consumer.committed(partitions, timeout: timeout)
        } catch {
            failure = "\(error)"
        }
        await consumer.close()
        return Result(target: target, error: failure)
    }
}
