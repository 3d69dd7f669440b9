import Foundation
import InvalidatorCore
import InvalidatorKafka
import InvalidatorRuntime
import Logging
import TestSupport
import Testing

/// A mock Kafka cluster whose topic `dead-letters` is the dead-letter store, one
/// cache node in pool `primary`, and pool `coordination` for the replay lock.
final class TopicReplayFixture: Sendable {
    let kafka: KafkaMockCluster
    let cache: RedisServer
    let coordination: RedisServer
    let folder: URL
    let deadLetterTopic = "dead-letters"
    let group = "invalidator-\(UUID().uuidString.prefix(8))"

    init(partitions: Int32 = 2) async throws {
        kafka = try KafkaMockCluster(brokers: 1)
        try kafka.createTopic("entity-changes", partitions: 1)
        try kafka.createTopic(deadLetterTopic, partitions: partitions)
        cache = try await RedisServer.start()
        coordination = try await RedisServer.start()
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("invalidator-topic-replay-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try ReplayTests.bumpRules.write(to: folder.appendingPathComponent("rules.yaml"), atomically: true, encoding: .utf8)
        try """
            sources:
              kafka:
                brokers: "\(kafka.bootstrapServers)"
                topics: ["entity-changes"]
                group: \(group)
                properties: { fetch.wait.max.ms: "5", session.timeout.ms: "6000" }
            pools:
              primary: { nodes: ["\(cache.endpoint)"], command_timeout: 5s, connect_timeout: 5s }
              coordination: { nodes: ["\(coordination.endpoint)"] }
            rules: rules.yaml
            retry: { attempts: 2, initial_backoff: 10ms, max_backoff: 50ms }
            dead_letters: { kafka_topic: "\(deadLetterTopic)", pool: coordination }
            """.write(to: folder.appendingPathComponent("invalidator.yaml"), atomically: true, encoding: .utf8)
    }

    deinit {
        kafka.close()
        try? FileManager.default.removeItem(at: folder)
    }

    func loaded() throws -> LoadedConfiguration {
        try ConfigurationFiles.load(configPath: folder.appendingPathComponent("invalidator.yaml").path, environment: [:])
    }

    /// Writes records as the worker does.
    func write(_ records: [DeadLetter]) async throws {
        let store = try KafkaDeadLetterStore(
            brokers: kafka.bootstrapServers, topic: deadLetterTopic, properties: [:], logger: quietLogger())
        try await store.write(records)
    }

    func replay(_ configure: (inout ReplayOptions) -> Void = { _ in }) async throws -> ReplayResult {
        try await runReplay(try loaded()) { options in
            options.storeTimeout = .seconds(10)
            configure(&options)
        }
    }

    /// Every record on the topic, settled or not, by offset per partition.
    func allRecords() async throws -> [DeadLetter] {
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                brokers: kafka.bootstrapServers, group: "probe-\(UUID().uuidString.prefix(8))", topics: [deadLetterTopic],
                properties: ["fetch.wait.max.ms": "5"]),
            logger: quietLogger())
        var ends: [TopicPartition: Int64] = [:]
        var records: [DeadLetter] = []
        for partition in try await consumer.partitions(of: deadLetterTopic) {
            let high = try await consumer.watermarks(partition).high
            if high > 0 { ends[partition] = high }
        }
        var events = consumer.events.makeAsyncIterator()
        while !ends.isEmpty, let event = try await events.next() {
            guard case .messages(let messages) = event else { continue }
            for message in messages {
                records.append(try DeadLetter(jsonText: String(decoding: message.value ?? [], as: UTF8.self)))
                if message.nextOffset >= ends[message.topicPartition] ?? 0 { ends[message.topicPartition] = nil }
            }
        }
        await consumer.close()
        return records
    }
}

@Suite(.timeLimit(.minutes(3))) struct TopicReplayTests {
    static func records(_ ids: Range<Int>, node: String) -> [DeadLetter] {
        ids.map { id in
            failedRecord(
                node: node,
                operations: [
                    PlannedOperation(.delete(key: "user:\(id)"), rule: "user"), PlannedOperation(.bump(key: "version:user:\(id)"), rule: "user"),
                ],
                event: #"{"entity":"user","id":"\#(id)","op":"update"}"#)
        }
    }

    /// Down node: records stay (rewritten with attempts incremented); back: every
    /// record is applied once, and nothing remains for the group.
    @Test func recordsStayWhileTheNodeIsDownAndAreAppliedOnceWhenItIsBack() async throws {
        let fixture = try await TopicReplayFixture()
        let keys = (0..<6).map { "user:\($0)" }
        let versions = (0..<6).map { "version:user:\($0)" }
        try await fixture.write(Self.records(0..<6, node: fixture.cache.endpoint))
        fixture.cache.kill()

        var result = try await fixture.replay()
        #expect(result.failed == 6 && result.replayed == 0 && result.remaining == 6 && result.exitCode == 1)
        #expect(result.records.allSatisfy { $0.id.hasPrefix("dead-letters/") && $0.attempts! > 2 })
        let rewritten = try await fixture.allRecords()
        #expect(rewritten.count == 12, "the 6 originals, then their updated copies")
        #expect(rewritten.filter { $0.attempts > 2 }.count == 6)

        try await fixture.cache.restart()
        try await seedKeys(fixture.cache, keys)
        result = try await fixture.replay()
        #expect(result.replayed == 6 && result.failed == 0 && result.remaining == 0 && result.exitCode == 0)
        #expect(try existingKeys(fixture.cache, keys) == 0)
        for version in versions { #expect(try fixture.cache.call("GET", version) == "1") }

        result = try await fixture.replay()
        #expect(result.records.isEmpty && result.remaining == 0)
        for version in versions { #expect(try fixture.cache.call("GET", version) == "1", "a settled record is not applied again") }
    }

    @Test func dryRunChangesNothing() async throws {
        let fixture = try await TopicReplayFixture()
        try await seedKeys(fixture.cache, ["user:0", "user:1"])
        try await fixture.write(Self.records(0..<2, node: fixture.cache.endpoint))
        let dry = try await fixture.replay { $0.dryRun = true }
        #expect(dry.wouldReplay == 2 && dry.remaining == 2)
        #expect(try existingKeys(fixture.cache, ["user:0", "user:1"]) == 2)
        #expect(try await fixture.allRecords().count == 2)
        #expect(try await fixture.replay().replayed == 2)
    }

    /// Records the filters leave out move to the end of the topic unchanged and
    /// are there for the next run.
    @Test func filteredOutRecordsAreKeptForTheNextRun() async throws {
        let fixture = try await TopicReplayFixture(partitions: 1)
        var records = Self.records(0..<3, node: fixture.cache.endpoint)
        records[1].rule = "other"
        records[1].operations = [PlannedOperation(.delete(key: "other:1"), rule: "other")]
        try await fixture.write(records)
        try await seedKeys(fixture.cache, ["user:0", "other:1", "user:2"])

        var result = try await fixture.replay { $0.rules = ["user"] }
        #expect(result.replayed == 2 && result.remaining == 1)
        #expect(try existingKeys(fixture.cache, ["user:0", "user:2"]) == 0)
        #expect(try existingKeys(fixture.cache, ["other:1"]) == 1)
        let kept = try await fixture.allRecords().last
        #expect(kept?.rule == "other" && kept?.attempts == 2, "moved unchanged")

        result = try await fixture.replay { $0.limit = 5 }
        #expect(result.replayed == 1 && result.remaining == 0)
        #expect(try existingKeys(fixture.cache, ["other:1"]) == 0)
    }

    @Test func limitLeavesTheRestUntouched() async throws {
        let fixture = try await TopicReplayFixture(partitions: 1)
        try await fixture.write(Self.records(0..<5, node: fixture.cache.endpoint))
        var result = try await fixture.replay { $0.limit = 2 }
        #expect(result.replayed == 2 && result.remaining == 3)
        result = try await fixture.replay()
        #expect(result.replayed == 3 && result.remaining == 0)
        #expect(try await fixture.allRecords().count == 5, "nothing was rewritten")
    }

    /// Two replays at once: the second is refused while the first holds the
    /// topic, so every record is applied exactly once (each bump counts).
    @Test func aSecondConcurrentReplayIsRefusedAndEachRecordAppliesOnce() async throws {
        let fixture = try await TopicReplayFixture(partitions: 4)
        let count = 40
        try await fixture.write(Self.records(0..<count, node: fixture.cache.endpoint))
        @Sendable func replay() async -> Result<ReplayResult, any Error> {
            do { return .success(try await fixture.replay()) } catch { return .failure(error) }
        }
        async let first = replay()
        async let second = replay()
        let outcomes = await [first, second]
        let succeeded = outcomes.compactMap { try? $0.get() }
        #expect(succeeded.count == 1)
        #expect(succeeded.first?.replayed == count && succeeded.first?.remaining == 0)
        for outcome in outcomes {
            if case .failure(let error) = outcome { #expect(error is ReplayAlreadyRunning, "\(error)") }
        }
        for id in 0..<count {
            #expect(try fixture.cache.call("GET", "version:user:\(id)") == "1")
        }
        #expect(try fixture.coordination.keys(matching: "invalidator:replay-lock:*").isEmpty, "the lock is released")
        #expect(try await fixture.replay().records.isEmpty)
    }

    @Test func unreachableBrokersStopTheRunWithAnError() async throws {
        let fixture = try await TopicReplayFixture()
        fixture.kafka.close()
        await #expect(throws: ReplayStoreUnavailable.self) {
            try await fixture.replay { $0.storeTimeout = .seconds(2) }
        }
    }

    /// The worker dead-letters to the topic while a node is down; once the node
    /// is back, `replay` applies those operations and the group has nothing left.
    @Test func workerDeadLettersToTheTopicAndReplayAppliesThem() async throws {
        let fixture = try await TopicReplayFixture()
        let keys = (0..<3).map { "user:\($0)" }
        fixture.cache.kill()
        let loaded = try fixture.loaded()
        let worker = try Worker(loaded: loaded, logger: quietLogger())
        let running = RunningWorker(worker)
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(brokers: fixture.kafka.bootstrapServers), logger: quietLogger())
        for id in 0..<3 {
            try await producer.send(KafkaProducerRecord(
                topic: "entity-changes", value: Array(#"{"entity":"user","id":"\#(id)","op":"update"}"#.utf8)))
        }
        try await producer.flush()
        await producer.close()
        #expect(try await eventually { try await fixture.allRecords().count == 3 })
        try await running.stop()
        let records = try await fixture.allRecords()
        #expect(records.allSatisfy { $0.node == fixture.cache.endpoint && $0.operations.count == 2 })
        #expect(Set(records.map(\.source)) == Set((0..<3).map { SourceCoordinates.kafka(topic: "entity-changes", partition: 0, offset: Int64($0)) }))

        try await fixture.cache.restart()
        try await seedKeys(fixture.cache, keys)
        let result = try await fixture.replay()
        #expect(result.replayed == 3 && result.remaining == 0)
        #expect(try existingKeys(fixture.cache, keys) == 0)
    }
}
