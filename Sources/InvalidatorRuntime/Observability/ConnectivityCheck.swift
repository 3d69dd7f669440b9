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
        package var isOK: Bool { error == nil }
        package var description: String { "\(target): " + (error.map { "FAILED: \($0)" } ?? "ok") }
    }

    /// PINGs every node of every pool (in a cluster, every node the slot map
    /// lists) and reads the group's committed offsets from the Kafka brokers, which
    /// needs the brokers and the group coordinator. Credentials are used, never shown.
    package static func run(_ configuration: Configuration, kafkaTimeout: Duration = .seconds(5), logger: Logger) async -> [Result] {
        var results: [Result] = []
        let pools = PoolSet(configuration: configuration, logger: logger)
        for pool in pools.pools {
            let name = pool.configuration.name
            for (node, error) in await pool.ping().sorted(by: { $0.key < $1.key }) {
                results.append(Result(target: "redis pool \(name) node \(node)", error: error.map { "\($0)" }))
            }
        }
        await pools.close()
        if let kafka = configuration.sources.kafka {
            results.append(await checkKafka(kafka, timeout: kafkaTimeout, logger: logger))
        }
        return results
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
