/// Settings of a `KafkaProducer`.
public struct KafkaProducerConfiguration: Sendable {
    /// `bootstrap.servers`: comma-separated `host:port` list.
    public var brokers: String
    /// librdkafka properties passed verbatim (SASL, TLS, `linger.ms`, `acks` ...);
    /// they override `brokers`.
    public var properties: [String: String]

    public init(brokers: String, properties: [String: String] = [:]) {
        self.brokers = brokers
        self.properties = properties
    }

    var librdkafkaProperties: [(String, String)] {
        [("bootstrap.servers", brokers)] + properties.sorted { $0.key < $1.key }
    }
}

/// A message to produce.
public struct KafkaProducerRecord: Hashable, Sendable {
    public var topic: String
    /// `nil` lets the partitioner choose from the key (or spread keyless messages).
    public var partition: Int32?
    public var key: [UInt8]?
    /// `nil` produces a tombstone.
    public var value: [UInt8]?
    public var headers: [KafkaHeader]

    public init(topic: String, partition: Int32? = nil, key: [UInt8]? = nil, value: [UInt8]?, headers: [KafkaHeader] = []) {
        self.topic = topic
        self.partition = partition
        self.key = key
        self.value = value
        self.headers = headers
    }
}

/// Where a produced message was stored.
public struct KafkaDelivery: Hashable, Sendable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
}
