import InvalidatorCore
import InvalidatorKafka
import Logging

/// Dead letters as messages on a Kafka topic: the record as JSON in the value,
/// the original event's key facts as headers in the style of Kafka Connect's
/// error headers (`__invalidator.errors.*`).
package final class KafkaDeadLetterStore: DeadLetterStore {
    private let producer: KafkaProducer
    package let topic: String
    static let headerPrefix = "__invalidator.errors."

    package init(brokers: String, topic: String, properties: [String: String], logger: Logger = Logger(label: "invalidator.dead-letters")) throws {
        // Durable means acknowledged by all in-sync replicas.
        var properties = Self.producerProperties(fromSource: properties)
        properties["acks"] = "all"
        self.producer = try KafkaProducer(configuration: KafkaProducerConfiguration(brokers: brokers, properties: properties), logger: logger)
        self.topic = topic
    }

    /// The source's librdkafka properties that a producer takes too (brokers' SASL,
    /// TLS, client settings), without the consumer-only ones.
    static func producerProperties(fromSource properties: [String: String]) -> [String: String] {
        properties.filter { !$0.key.hasPrefix("group.") && !$0.key.hasPrefix("fetch.") && $0.key != "auto.offset.reset" }
    }

    package func write(_ records: [DeadLetter]) async throws {
        try await append(records)
        DeadLetterMetrics.recordWritten(records)
    }

    /// Appends `records` and returns once all are acknowledged.
    func append(_ records: [DeadLetter]) async throws(KafkaError) {
        for record in records {
            try await producer.send(KafkaProducerRecord(
                topic: topic, key: Array((record.node ?? record.reason.rawValue).utf8),
                value: Array(record.json.serialized().utf8), headers: Self.headers(record)))
        }
        try await producer.flush()
    }

    /// Appends an unchanged copy of `message` (read from this topic) and returns once it is acknowledged.
    func append(copyOf message: KafkaMessage) async throws(KafkaError) {
        try await producer.produce(KafkaProducerRecord(topic: topic, key: message.key, value: message.value, headers: message.headers))
    }

    func close() async {
        await producer.close()
    }

    static func headers(_ record: DeadLetter) -> [KafkaHeader] {
        var headers = [
            KafkaHeader(key: headerPrefix + "reason", string: record.reason.rawValue),
            KafkaHeader(key: headerPrefix + "exception.class.name", string: record.errorClass),
            KafkaHeader(key: headerPrefix + "exception.message", string: record.errorMessage),
            KafkaHeader(key: headerPrefix + "attempts", string: String(record.attempts)),
            KafkaHeader(key: headerPrefix + "worker", string: record.worker),
        ]
        if case .kafka(let topic, let partition, let offset) = record.source {
            headers += [
                KafkaHeader(key: headerPrefix + "topic", string: topic),
                KafkaHeader(key: headerPrefix + "partition", string: String(partition)),
                KafkaHeader(key: headerPrefix + "offset", string: String(offset)),
            ]
        }
        for (name, value) in [("rule", record.rule), ("pool", record.pool), ("node", record.node)] {
            if let value { headers.append(KafkaHeader(key: headerPrefix + "\(name)", string: value)) }
        }
        return headers
    }
}
