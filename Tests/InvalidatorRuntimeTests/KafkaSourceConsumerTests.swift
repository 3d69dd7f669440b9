import InvalidatorCore
import InvalidatorKafka
import InvalidatorRuntime
import Testing

@Suite struct KafkaSourceConsumerTests {
    /// The properties librdkafka ends up with: later entries win, as when the consumer is built.
    func applied(_ yaml: String) throws -> [String: String] {
        let configuration = try ConfigurationLoader.load(yaml: yaml, file: "invalidator.yaml", environment: [:]) { path throws(FileReadError) in
            throw FileReadError(path: path, reason: "no such file")
        }
        let source = try #require(configuration.sources.kafka)
        let properties = KafkaEventSource.consumerConfiguration(source).librdkafkaProperties
        return Dictionary(properties, uniquingKeysWith: { $1 })
    }

    func config(_ kafkaLines: String) -> String {
        """
        sources:
          kafka:
            brokers: "k:9092"
            topics: [entity-changes]
        \(kafkaLines)
        pools:
          main: { nodes: ["127.0.0.1:6379"] }
        rules: r.yaml
        """
    }

    @Test func maxBufferedBytesBecomesLibrdkafkasQueueLimits() throws {
        let properties = try applied(config("    max_buffered_bytes: 8MiB"))
        #expect(properties["queued.max.messages.kbytes"] == "4096")
        #expect(properties["queued.min.messages"] == "\((4 << 20) / KafkaConsumerConfiguration.bytesPerQueuedMessage)")
    }

    @Test func withoutMaxBufferedBytesTheDefaultBudgetApplies() throws {
        let properties = try applied(config(""))
        let half = KafkaConsumerConfiguration.defaultMaxBufferedBytes / 2
        #expect(properties["queued.max.messages.kbytes"] == "\(half / 1024)")
        #expect(properties["queued.min.messages"] == "\(half / KafkaConsumerConfiguration.bytesPerQueuedMessage)")
    }

    @Test func explicitPropertiesWinOverMaxBufferedBytes() throws {
        let properties = try applied(config("""
                max_buffered_bytes: 8MiB
                properties:
                  queued.min.messages: "5000"
                  queued.max.messages.kbytes: "1024"
            """))
        #expect(properties["queued.min.messages"] == "5000")
        #expect(properties["queued.max.messages.kbytes"] == "1024")
    }
}
