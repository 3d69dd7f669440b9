/// A Kafka record header. Kafka allows a header without a value.
package struct KafkaHeader: Hashable, Sendable {
    package var key: String
    package var value: [UInt8]?

    package init(key: String, value: [UInt8]?) {
        self.key = key
        self.value = value
    }

    /// A header whose value is the UTF-8 encoding of `value`.
    package init(key: String, string value: String) {
        self.init(key: key, value: Array(value.utf8))
    }
}

/// A message read from Kafka.
package struct KafkaMessage: Hashable, Sendable {
    package var topic: String
    package var partition: Int32
    package var offset: Int64
    package var key: [UInt8]?
    /// `nil` for a tombstone (a record with a null value).
    package var value: [UInt8]?
    package var headers: [KafkaHeader]
    /// Milliseconds since the Unix epoch (create or log-append time), when the broker reports one.
    package var timestamp: Int64?

    package init(
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

    package var topicPartition: TopicPartition { TopicPartition(topic, partition) }

    /// The offset to commit once this message (and every earlier one of its partition) is done.
    package var nextOffset: Int64 { offset + 1 }

    /// The value of the first header named `key`, if any.
    package func header(_ key: String) -> [UInt8]? {
        headers.first { $0.key == key }?.value
    }
}
