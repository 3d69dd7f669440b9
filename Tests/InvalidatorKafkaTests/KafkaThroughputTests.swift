import InvalidatorKafka
import Testing

@Suite struct KafkaThroughputTests {
    /// A smoke check, not a timed assertion: it prints the rates it measured.
    @Test func drainsManySmallMessages() async throws {
        let total = 200_000
        let partitions: Int32 = 16
        let fixture = try KafkaFixture(topic: "bulk", partitions: partitions)

        let producer = try fixture.producer()
        let produceStart = ContinuousClock.now
        for index in 0..<total {
            try await producer.send(KafkaProducerRecord(
                topic: "bulk", partition: Int32(index) % partitions, key: Array("k\(index)".utf8),
                value: Array(#"{"entity":"user","id":"\#(index)"}"#.utf8)
            ))
        }
        try await producer.flush(timeout: .seconds(60))
        let produceTime = ContinuousClock.now - produceStart
        await producer.close()

        let consumer = try fixture.consumer(group: "bulk", topics: ["bulk"])
        // Timed from the first message: joining the group takes the mock 3 s.
        var consumeStart: ContinuousClock.Instant?
        var received = 0
        for try await event in consumer.events {
            guard case .messages(let batch) = event else { continue }
            consumeStart = consumeStart ?? .now
            received += batch.count
            if received >= total { break }
        }
        let consumeTime = ContinuousClock.now - (consumeStart ?? .now)
        await consumer.close()

        #expect(received == total)
        print("produced \(total) messages at \(Self.rate(total, produceTime)) messages/s")
        print("consumed \(total) messages at \(Self.rate(total, consumeTime)) messages/s")
    }

    private static func rate(_ count: Int, _ duration: Duration) -> Int {
        let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        return Int(Double(count) / seconds)
    }
}
