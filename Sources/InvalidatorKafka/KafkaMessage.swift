/// A Kafka record header. Kafka allows a header without a value.
public struct KafkaHeader: Hashable, Sendable {
    public var key: String
    public var value: [UInt8]?

    public init(key: String, value: [UInt8]?) {
        self.key = key
        self.value = value
    }

    /// A header whose value is the UTF-8 encoding of `value`.
    public init(key: String, string value: String) {
        self.init(key: key, value: Array(value.utf8))
    }
}

/// A message read from Kafka.
public struct KafkaMessage: Hashable, Sendable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var key: [UInt8]?
    /// `nil` for a tombstone (a record with a null value).
    public var value: [UInt8]?
    public var headers: [KafkaHeader]
    /// Milliseconds since the Unix epoch (create or log-append time), when the broker reports one.
    public var timestamp: Int64?

    public init(
        topic: String, partition: Int32, offset: Int64,
        key: [UInt8]?, value: [UInt8]?, headers: [KafkaHeader] = [], timestamp: Int64? = nil
    ) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp = timestamp
    }

    public var topicPartition: TopicPartition { TopicPartition(topic, partition) }

    /// The offset to commit once this message (and every earlier one of its partition) is done.
    public var nextOffset: Int64 { offset + 1 }

    /// The value of the first header named `key`, if any.
    public func header(_ key: String) -> [UInt8]? {
        headers.first { $0.key == key }?.value
    }
}
