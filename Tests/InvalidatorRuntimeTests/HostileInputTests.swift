import Foundation
import InvalidatorCore
import InvalidatorKafka
import InvalidatorRuntime
import Logging
import ServiceLifecycle
import Synchronization
import TestDoubles
import TestSupport
import Testing

/// Runs a worker's services like ``RunningWorker`` and tells whether they are still running.
final class MonitoredWorker: Sendable {
    let worker: Worker
    private let group: ServiceGroup
    private let task: Task<Void, any Error>
    private let ended: EndFlag

    final class EndFlag: Sendable {
        let value = Mutex<Bool>(false)
    }

    init(_ worker: Worker) {
        self.worker = worker
        let group = worker.makeServiceGroup()
        let ended = EndFlag()
        self.group = group
        self.ended = ended
        task = Task {
            defer { ended.value.withLock { $0 = true } }
            try await group.run()
        }
    }

    /// False once the service group returned or threw on its own.
    var isRunning: Bool { !ended.value.withLock { $0 } }

    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await task.value
    }
}

/// Events that used to crash the worker or be repaired into other keys, through
/// real sources: pub/sub and streams on a real redis-server, Kafka on librdkafka's
/// mock cluster. A crash (a trap) ends the whole test process, which fails the run.
@Suite(.timeLimit(.minutes(3))) struct HostileInputTests {
    static let pubSubSources = """
          redis_pubsub:
            pool: primary
            channels: ["entity-changes"]
        """

    static let streamSources = """
          redis_stream:
            pool: primary
            streams: ["entity-changes"]
            group: invalidator
        """

    static func user(_ id: Int, occurredAt: String? = nil) -> String {
        let time = occurredAt.map { #","occurred_at":"\#($0)""# } ?? ""
        return #"{"entity":"user","id":"\#(id)","op":"update"\#(time)}"#
    }

    /// Go's zero `time.Time`, as a service that never set the field sends it.
    static func goZeroTime(_ id: Int) -> String { user(id, occurredAt: "0001-01-01T00:00:00Z") }

    /// A Debezium change whose `ts_ms` is 10^13 ms before the epoch (year 1653).
    static func ancientDebezium(_ id: Int) -> String {
        #"{"payload":{"before":null,"after":{"id":\#(id),"name":"x"},"source":{"table":"user","db":"app"},"op":"u","ts_ms":-10000000000000}}"#
    }

    /// A native event whose id holds the byte 0xff.
    static func invalidUTF8User(_ id: String) -> [UInt8] {
        Array(#"{"entity":"user","id":"\#(id)"#.utf8) + [0xFF] + Array(#"","op":"update"}"#.utf8)
    }

    /// `user:<id>` as the invalid id would be repaired into text: with U+FFFD.
    static func repairedKey(_ id: String) -> String { "user:\(id)\u{FFFD}" }

    static func quiet() -> Logger {
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        return logger
    }

    func kafkaWorker(_ harness: WorkerHarness, metrics: AllValuesMetrics) throws -> Worker {
        let loaded = try ConfigurationFiles.load(configPath: harness.configPath.path, environment: [:])
        return try Worker(
            loaded: loaded, workerID: "test-worker", observability: WorkerObservability(metrics: WorkerMetrics(factory: metrics)),
            logger: Self.quiet())
    }

    func produce(_ harness: WorkerHarness, _ records: [KafkaProducerRecord]) async throws {
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(brokers: harness.kafka.bootstrapServers), logger: Logger(label: "producer"))
        for record in records { try await producer.send(record) }
        try await producer.flush()
        await producer.close()
    }

    func value(_ harness: WorkerHarness, _ event: String) -> KafkaProducerRecord {
        KafkaProducerRecord(topic: harness.topic, partition: 0, value: Array(event.utf8))
    }

    /// The dead-letter records of a stream store, decoded.
    func records(_ server: RedisServer, stream: String = "dead-letters") throws -> [DeadLetter] {
        let lines = try server.call("XRANGE", stream, "-", "+").split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        return try lines.indices.filter { lines[$0] == "record" && $0 + 1 < lines.count }.map { try DeadLetter(jsonText: lines[$0 + 1]) }
    }

    // MARK: A. Absurd event ages

    @Test func zeroTimeAndAncientTimestampsDoNotStopThePubSubWorker() async throws {
        let harness = try await RedisSourceHarness(sources: Self.pubSubSources)
        try await seedKeys(harness.redis, ["user:1", "user:2", "user:3", "user:4", "user:5"])
        let metrics = AllValuesMetrics()
        let running = MonitoredWorker(try harness.makeWorker(observability: WorkerObservability(metrics: WorkerMetrics(factory: metrics))))
        let source = try #require(running.worker.redisPubSub)
        #expect(try await eventually { source.isSubscribed })

        // One at a time, each after the previous was applied: a trap after applying
        // an event (as the latency used to) would end the process right there.
        try await harness.publish([Self.goZeroTime(1)])
        #expect(try await eventually { try existingKeys(harness.redis, ["user:1"]) == 0 })
        try await harness.publish([Self.user(2)])
        #expect(try await eventually { try existingKeys(harness.redis, ["user:2"]) == 0 })
        try await harness.publish([Self.ancientDebezium(3)])
        #expect(try await eventually { try existingKeys(harness.redis, ["user:3"]) == 0 })
        // And from the far future: a negative age.
        try await harness.publish([Self.user(4, occurredAt: "9999-12-31T23:59:59Z"), Self.user(5)])
        #expect(try await eventually { try existingKeys(harness.redis, ["user:4", "user:5"]) == 0 })
        #expect(try await eventually {
            metrics.counter(MetricName.events, ["source": "redis_pubsub", "result": "applied"]) == 5
        })
        #expect(running.isRunning)
        #expect(source.isSubscribed)
        try await running.stop()

        #expect(source.processedEvents == 5)
        #expect(try harness.deadLetterReasons().isEmpty)
        // Pub/sub has no broker timestamp: only the three events with a time have an age.
        #expect(metrics.recorded(MetricName.endToEndLatency) == [longestRecordedLatencyNanoseconds, longestRecordedLatencyNanoseconds, 0])
    }

    @Test func zeroTimeAndAncientTimestampsDoNotStopTheKafkaWorker() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        try await seedKeys(harness.redis, ["user:1", "user:2", "user:3", "user:4"])
        let metrics = AllValuesMetrics()
        let running = MonitoredWorker(try kafkaWorker(harness, metrics: metrics))

        try await produce(harness, [value(harness, Self.goZeroTime(1))])
        #expect(try await eventually { try existingKeys(harness.redis, ["user:1"]) == 0 })
        try await produce(harness, [value(harness, Self.user(2))])
        #expect(try await eventually { try existingKeys(harness.redis, ["user:2"]) == 0 })
        try await produce(harness, [value(harness, Self.ancientDebezium(3)), value(harness, Self.user(4))])
        #expect(try await eventually { try existingKeys(harness.redis, ["user:3", "user:4"]) == 0 })
        #expect(try await eventually { try await harness.committedTotal() == 4 })
        #expect(running.isRunning)
        try await running.stop()

        #expect(try await harness.committedTotal() == 4)
        #expect(try harness.deadLetterReasons().isEmpty)
        #expect(metrics.counter(MetricName.events, ["source": "kafka", "result": "applied"]) == 4)
        // Events without occurred_at are aged from the broker timestamp: a few seconds at most.
        let latencies = metrics.recorded(MetricName.endToEndLatency)
        #expect(latencies.count == 4)
        #expect(latencies.filter { $0 == longestRecordedLatencyNanoseconds }.count == 2, "\(latencies)")
        #expect(latencies.allSatisfy { (0...longestRecordedLatencyNanoseconds).contains($0) }, "\(latencies)")
    }

    // MARK: B. Invalid UTF-8 through real sources

    @Test func anInvalidUTF8IdFromPubSubIsDeadLetteredAndTheNextEventApplied() async throws {
        let harness = try await RedisSourceHarness(sources: Self.pubSubSources)
        let untouched = ["user:1", Self.repairedKey("1")]
        try await seedKeys(harness.redis, untouched + ["user:2"])
        let running = MonitoredWorker(try harness.makeWorker())
        let source = try #require(running.worker.redisPubSub)
        #expect(try await eventually { source.isSubscribed })

        try harness.redis.call(bytes: [Array("PUBLISH".utf8), Array("entity-changes".utf8), Self.invalidUTF8User("1")])
        try await harness.publish([Self.user(2)])

        #expect(try await eventually { try existingKeys(harness.redis, ["user:2"]) == 0 })
        #expect(try await eventually { try harness.deadLetterReasons() == ["invalid-json"] })
        #expect(running.isRunning)
        try await running.stop()

        #expect(try existingKeys(harness.redis, untouched) == 2, "neither the id's prefix nor its repaired form is deleted")
        let record = try #require(try records(harness.deadLetterRedis).first)
        #expect(record.reason == .invalidJSON)
        #expect(record.event == Self.invalidUTF8User("1"), "the record keeps the exact bytes")
        #expect(record.errorMessage.contains("invalid UTF-8 in string"), "\(record.errorMessage)")
        #expect(record.source == .redisPubSub(channel: "entity-changes"))
        #expect(try harness.deadLetterRecords().contains(#""event_base64":""#))
    }

    @Test func anInvalidUTF8IdFromKafkaIsDeadLetteredCommittedAndTheNextEventApplied() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        let untouched = ["user:1", Self.repairedKey("1")]
        try await seedKeys(harness.redis, untouched + ["user:2"])
        let running = MonitoredWorker(try harness.makeWorker())

        try await produce(harness, [
            KafkaProducerRecord(topic: harness.topic, partition: 0, value: Self.invalidUTF8User("1")),
            value(harness, Self.user(2)),
        ])

        #expect(try await eventually { try existingKeys(harness.redis, ["user:2"]) == 0 })
        #expect(try await eventually { try harness.deadLetterReasons() == ["invalid-json"] })
        #expect(try await eventually { try await harness.committedTotal() == 2 })
        #expect(running.isRunning)
        try await running.stop()

        #expect(try existingKeys(harness.redis, untouched) == 2)
        let record = try #require(try records(harness.deadLetterRedis).first)
        #expect(record.event == Self.invalidUTF8User("1"))
        #expect(record.source == .kafka(topic: harness.topic, partition: 0, offset: 0))
    }

    @Test func streamEntriesWithBytesThatAreNotUTF8AreDeadLetteredAndAcknowledged() async throws {
        let harness = try await RedisSourceHarness(sources: Self.streamSources)
        let untouched = ["user:1", Self.repairedKey("1"), "user:3", Self.repairedKey("3"), "user:5", "user:5\u{FFFD}"]
        try await seedKeys(harness.redis, untouched + ["user:4"])
        func xadd(_ fields: [[UInt8]]) throws {
            try harness.redis.call(bytes: [Array("XADD".utf8), Array("entity-changes".utf8), Array("*".utf8)] + fields)
        }
        // The event field holds invalid UTF-8.
        try xadd([Array("event".utf8), Self.invalidUTF8User("1")])
        // Several fields, read as an object: a value that is not UTF-8 ...
        try xadd([Array("entity".utf8), Array("user".utf8), Array("id".utf8), Array("3".utf8) + [0xFF], Array("op".utf8), Array("update".utf8)])
        // ... or a name that is not.
        try xadd([Array("entity".utf8), Array("user".utf8), Array("id".utf8), Array("5".utf8), Array("op".utf8), Array("update".utf8), [0xFE], Array("x".utf8)])
        try await harness.add([Self.user(4)])

        let running = MonitoredWorker(try harness.makeWorker())
        #expect(try await eventually { try existingKeys(harness.redis, ["user:4"]) == 0 })
        #expect(try await eventually { try harness.deadLetterReasons().count == 3 })
        #expect(try await eventually { try harness.pending() == 0 })
        #expect(running.isRunning)
        try await running.stop()

        #expect(try harness.deadLetterReasons() == ["invalid-json", "invalid-json", "invalid-json"])
        #expect(try existingKeys(harness.redis, untouched) == untouched.count, "no repaired id became a key to delete")
        let events = try records(harness.deadLetterRedis).map(\.event)
        #expect(events.first == Self.invalidUTF8User("1"))
        #expect(events.dropFirst().allSatisfy { $0.contains(0xFF) || $0.contains(0xFE) }, "the object keeps the entry's bytes")
    }

    /// Binary mode: a `ce_*` header that is not UTF-8 dead-letters the event (no
    /// tenant repaired into a key), the record keeps the header's bytes, and the next
    /// message is applied.
    @Test func aBinaryCloudEventWithAHeaderThatIsNotUTF8IsDeadLetteredFromKafka() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        let repairedTenantKey = "org:a\u{FFFD}\u{FFFD}:7"
        try await seedKeys(harness.redis, [repairedTenantKey, "org:acme:8"])
        func cloudEvent(_ id: String, tenant: [UInt8]) -> KafkaProducerRecord {
            KafkaProducerRecord(
                topic: harness.topic, partition: 0, value: Array(#"{"entity":"org","id":"\#(id)","op":"update"}"#.utf8),
                headers: [
                    KafkaHeader(key: "ce_specversion", string: "1.0"), KafkaHeader(key: "ce_id", string: "c-\(id)"),
                    KafkaHeader(key: "ce_source", string: "/orgs"), KafkaHeader(key: "ce_type", string: "org.changed"),
                    KafkaHeader(key: "ce_tenant", value: tenant),
                ])
        }
        let running = MonitoredWorker(try harness.makeWorker())
        try await produce(harness, [cloudEvent("7", tenant: [0x61, 0xFF, 0xFE]), cloudEvent("8", tenant: Array("acme".utf8))])

        #expect(try await eventually { try existingKeys(harness.redis, ["org:acme:8"]) == 0 })
        #expect(try await eventually { try harness.deadLetterReasons() == ["invalid-json"] })
        #expect(try await eventually { try await harness.committedTotal() == 2 })
        try await running.stop()

        #expect(try existingKeys(harness.redis, [repairedTenantKey]) == 1)
        #expect(try harness.deadLetterRedis.call("XRANGE", "dead-letters", "-", "+").contains(#""ce_tenant":{"base64":"Yf/+"}"#))
        let record = try #require(try records(harness.deadLetterRedis).first)
        #expect(record.headers["ce_tenant"] == [0x61, 0xFF, 0xFE])
        #expect(record.headers["ce_id"] == Array("c-7".utf8))
        #expect(record.errorMessage.contains("ce_tenant"), "\(record.errorMessage)")
    }

    // MARK: Replay attempts saturate

    @Test func replayAttemptsSaturateInsteadOfTrapping() async throws {
        let fixture = try await ReplayFixture(rules: """
            rules:
              - name: user
                match: { entity: user }
                bump: ["version:user:{id}"]
            """)
        // WRONGTYPE: the bump fails again, for good, on every replay.
        try fixture.cache[0].call("RPUSH", "version:user:1", "not-a-counter")
        var poison = DeadLetter(
            event: Array(#"{"entity":"user""#.utf8), source: .kafka(topic: "entity-changes", partition: 0, offset: 8),
            reason: .invalidJSON, errorClass: "invalid-json", errorMessage: "unexpected end of input",
            attempts: Int.max, failedAt: "2026-11-20T10:00:00.000Z", worker: "test-worker")
        poison.lastFailedAt = "2026-11-20T10:00:00.000Z"
        try await fixture.write([
            failedRecord(node: fixture.cache[0].endpoint, operations: [PlannedOperation(.bump(key: "version:user:1"), rule: "user")], attempts: Int.max),
            poison,
        ])

        let result = try await fixture.replay()

        #expect(result.failed == 2 && result.exitCode == 1)
        let stored = try await fixture.stored().compactMap(\.record)
        #expect(stored.count == 2)
        #expect(stored.map(\.attempts) == [Int.max, Int.max])
        #expect(Set(stored.map(\.reason)) == [.operationFailed, .invalidJSON])
    }
}
