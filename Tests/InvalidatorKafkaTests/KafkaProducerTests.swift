import InvalidatorKafka
import Testing

@Suite struct KafkaProducerTests {
    @Test func headersKeysAndTombstonesRoundTrip() async throws {
        let fixture = try KafkaFixture(topic: "events", partitions: 1)
        let producer = try fixture.producer()
        let cloudEvent = KafkaProducerRecord(
            topic: "events", key: Array("user-123".utf8), value: Array(#"{"id":"123"}"#.utf8),
            headers: [
                KafkaHeader(key: "ce_specversion", string: "1.0"),
                KafkaHeader(key: "ce_type", string: "user.updated"),
                KafkaHeader(key: "ce_id", string: "e-1"),
                KafkaHeader(key: "content-type", string: "application/json"),
                KafkaHeader(key: "empty", value: []),
                KafkaHeader(key: "null", value: nil),
            ]
        )
        let tombstone = KafkaProducerRecord(topic: "events", key: Array("user-123".utf8), value: nil)
        let emptyValue = KafkaProducerRecord(topic: "events", key: [], value: [])
        let keyless = KafkaProducerRecord(topic: "events", value: Array("v".utf8))

        var deliveries: [KafkaDelivery] = []
        for record in [cloudEvent, tombstone, emptyValue, keyless] {
            deliveries.append(try await producer.produce(record))
        }
        await producer.close()
        #expect(deliveries.map(\.offset) == [0, 1, 2, 3])

        let consumer = try fixture.consumer(group: "g", topics: ["events"])
        let messages = try await readMessages(from: consumer) { $0.count >= 4 }
        await consumer.close()

        try #require(messages.count == 4)
        #expect(messages[0].headers == cloudEvent.headers)
        #expect(messages[0].header("ce_type") == Array("user.updated".utf8))
        #expect(messages[0].key == cloudEvent.key)
        #expect(messages[0].value == cloudEvent.value)
        #expect(messages[1].value == nil, "tombstone")
        #expect(messages[1].key == tombstone.key)
        #expect(messages[2].value == [], "empty is not a tombstone")
        #expect(messages[2].key == [])
        #expect(messages[3].key == nil)
        #expect(messages[3].headers.isEmpty)
    }

    @Test func deliveryToUnknownPartitionFails() async throws {
        let fixture = try KafkaFixture(topic: "events", partitions: 1)
        let producer = try fixture.producer()
        await #expect(throws: KafkaError.self) {
            try await producer.produce(KafkaProducerRecord(topic: "events", partition: 7, value: [1]))
        }
        await producer.close()
    }
}
