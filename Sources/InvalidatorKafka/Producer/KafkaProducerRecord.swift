/// Settings of a `KafkaProducer`.
package struct KafkaProducerConfiguration: Sendable {
    /// `bootstrap.servers`: comma-separated `host:port` list.
    package var brokers: String
    /// librdkafka properties passed verbatim (SASL, TLS, `linger.ms`, `acks` ...);
    /// they override `brokers`.
    package var properties: [String: String]

    package init(brokers: String, properties: [String: String] = [:]) {
        self.brokers = brokers
        self.properties = properties
    }

    var librdkafkaProperties: [(String, String)] {
        [("bootstrap.servers", brokers)] + properties.sorted { $0.key < $1.key }
    }
}

/// A message to produce.
package struct KafkaProducerRecord: Hashable, Sendable {
    package var topic: String
    /// `nil` lets the partitioner choose from the key (or spread keyless messages).
    package var partition: Int32?
    package var key: [UInt8]?
    /// `nil` produces a tombstone.
    package var value: [UInt8]?
    package var headers: [KafkaHeader]

    package init(topic: String, partition: Int32? = nil, key: [UInt8]? = nil, value: [UInt8]?, headers: [KafkaHeader] = []) {
        self.topic = topic
        self.partition = partition
        self.key = key
        self.value = value
        self.headers = headers
    }
}

/// Where a produced message was stored.
package struct KafkaDelivery: Hashable, Sendable {
    package var topic: String
    package var partition: Int32
    package var offset: Int64
}
