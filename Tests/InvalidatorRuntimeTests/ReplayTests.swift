import Foundation
import InvalidatorCore
import InvalidatorKafka
import InvalidatorRuntime
import Logging
import Metrics
import Synchronization
import TestSupport
import Testing

/// Cache nodes in pool `primary`, a dead-letter server, and a config with the given rules.
final class ReplayFixture: Sendable {
    let cache: [RedisServer]
    let dead: RedisServer
    let folder: URL
    let stream = "dead-letters"

    init(cacheNodes: Int = 1, rules: String, retryAttempts: Int = 2) async throws {
        cache = try await RedisServer.start(count: cacheNodes)
        dead = try await RedisServer.start()
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("invalidator-replay-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try writeRules(rules)
        let nodes = cache.map { "\"\($0.endpoint)\"" }.joined(separator: ", ")
        let config = """
            pools:
              primary: { mode: \(cacheNodes == 1 ? "single" : "replicated"), nodes: [\(nodes)], command_timeout: 5s, connect_timeout: 5s }
              dead: { nodes: ["\(dead.endpoint)"], connect_timeout: 5s }
            rules: rules.yaml
            retry: { attempts: \(retryAttempts), initial_backoff: 10ms, max_backoff: 50ms }
            dead_letters: { pool: dead, stream: "\(stream)" }
            sources: { redis_pubsub: { pool: primary, channels: [entity-changes] } }
            """
        try config.write(to: configPath, atomically: true, encoding: .utf8)
    }

    deinit {
        try? FileManager.default.removeItem(at: folder)
    }

    var configPath: URL { folder.appendingPathComponent("invalidator.yaml") }

    func writeRules(_ rules: String) throws {
        try rules.write(to: folder.appendingPathComponent("rules.yaml"), atomically: true, encoding: .utf8)
    }

    func loaded() throws -> LoadedConfiguration {
        try ConfigurationFiles.load(configPath: configPath.path, environment: [:])
    }

    func replayer() throws -> Replayer {
        try Replayer(loaded: loaded(), logger: quietLogger())
    }

    /// The worker's pipeline over the same pools and store, to dead-letter events as the worker does.
    func process(_ events: [String]) async throws {
        try await process(events.map { IncomingEvent(source: .manual, payload: Array($0.utf8)) })
    }

    func process(_ events: [IncomingEvent]) async throws {
        let loaded = try loaded()
        let pools = PoolSet(configuration: loaded.configuration, logger: quietLogger())
        let pipeline = EventPipeline(
            rules: RulesState(Planner(rules: loaded.rules, pools: loaded.configuration.poolTargets)), pools: pools,
            deadLetters: RedisStreamDeadLetterStore(pool: pools.pool(named: "dead")!, stream: stream),
            workerID: "test-worker", logger: quietLogger())
        let result = await pipeline.process(events)
        #expect(result.isDurable)
        await pools.close()
    }

    /// Writes records straight into the store.
    func write(_ records: [DeadLetter]) async throws {
        let loaded = try loaded()
        let pools = PoolSet(configuration: loaded.configuration, logger: quietLogger())
        try await RedisStreamDeadLetterStore(pool: pools.pool(named: "dead")!, stream: stream).write(records)
        await pools.close()
    }

    func stored() async throws -> [StoredDeadLetter] {
        let replayer = try replayer()
        let all = try await #require(replayer.streamReader).all()
        await replayer.close()
        return all
    }

    func replay(_ configure: (inout ReplayOptions) -> Void = { _ in }) async throws -> ReplayResult {
        try await runReplay(try loaded(), configure)
    }
}

/// One `replay` run over `loaded`, as the command does it: its own connections, closed after.
func runReplay(_ loaded: LoadedConfiguration, _ configure: (inout ReplayOptions) -> Void) async throws -> ReplayResult {
    var options = ReplayOptions(replayerID: "test-replay")
    configure(&options)
    let replayer = Replayer(loaded: loaded, logger: quietLogger())
    do {
        let result = try await replayer.run(options)
        await replayer.close()
        return result
    } catch {
        await replayer.close()
        throw error
    }
}

func quietLogger() -> Logger {
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    return logger
}

/// An `operation-failed` record as the worker writes it.
func failedRecord(
    node: String, operations: [PlannedOperation], event: String = #"{"entity":"user","id":"1","op":"update"}"#,
    attempts: Int = 2, pool: String = "primary"
) -> DeadLetter {
    DeadLetter(
        event: Array(event.utf8), source: .kafka(topic: "entity-changes", partition: 0, offset: 7), reason: .operationFailed,
        errorClass: "connection", errorMessage: "connection refused", rule: operations.first?.rule, pool: pool, node: node,
        operations: operations, attempts: attempts, failedAt: "2026-11-20T10:00:00.000Z", worker: "test-worker")
}

@Suite(.timeLimit(.minutes(2))) struct ReplayTests {
    static let bumpRules = """
        rules:
          - name: user
            match: { entity: user }
            delete: ["user:{id}"]
            bump: ["version:user:{id}"]
        """

    // MARK: Worker → dead letters → replay

    /// One node of a replicated pool is killed while the worker runs: its operations
    /// are dead-lettered with that node and exactly those operations, offsets are
    /// committed, the other node gets its operations once. The node comes back;
    /// replay applies the rest, once, and empties the store.
    @Test func aDeadNodesOperationsAreReplayedOnceWhenItIsBack() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        let edge = try await RedisServer.start()
        try Self.bumpRules.write(to: harness.folder.appendingPathComponent("rules.yaml"), atomically: true, encoding: .utf8)
        try """
            sources:
              kafka:
                brokers: "\(harness.kafka.bootstrapServers)"
                topics: ["\(harness.topic)"]
                group: \(harness.group)
                properties: { fetch.wait.max.ms: "5", session.timeout.ms: "6000" }
            pools:
              primary: { mode: replicated, nodes: ["\(harness.redis.endpoint)", "\(edge.endpoint)"], command_timeout: 5s, connect_timeout: 5s }
              dead: { nodes: ["\(harness.deadLetterRedis.endpoint)"], connect_timeout: 5s }
            rules: rules.yaml
            retry: { attempts: 2, initial_backoff: 10ms, max_backoff: 50ms }
            dead_letters: { pool: dead, stream: "dead-letters" }
            shutdown: { drain_timeout: 5s }
            """.write(to: harness.configPath, atomically: true, encoding: .utf8)
        let keys = (0..<3).map { "user:\($0)" }
        let versions = (0..<3).map { "version:user:\($0)" }
        try await seedKeys(harness.redis, keys)
        edge.kill()

        try await harness.produce((0..<3).map { #"{"entity":"user","id":"\#($0)","op":"update"}"# })
        let running = RunningWorker(try harness.makeWorker())
        #expect(try await eventually { try harness.deadLetterReasons().count == 3 })
        try await running.stop()
        #expect(try await harness.committedTotal() == 3)
        #expect(try existingKeys(harness.redis, keys) == 0)
        for version in versions { #expect(try harness.redis.call("GET", version) == "1") }

        let loaded = try ConfigurationFiles.load(configPath: harness.configPath.path, environment: [:])
        var replayer = Replayer(loaded: loaded, logger: quietLogger())
        let records = try await #require(replayer.streamReader).all()
        #expect(records.count == 3)
        for (index, stored) in records.enumerated() {
            let record = try #require(stored.record)
            #expect(record.node == edge.endpoint)
            #expect(record.pool == "primary")
            #expect(record.source == .kafka(topic: harness.topic, partition: 0, offset: Int64(index)))
            #expect(record.operations.map(\.operation) == [.delete(key: "user:\(index)"), .bump(key: "version:user:\(index)")])
        }

        // Still down: everything stays, attempts incremented.
        var result = try await replayer.run(ReplayOptions(replayerID: "test"))
        await replayer.close()
        #expect(result.failed == 3 && result.replayed == 0 && result.exitCode == 1)
        #expect(result.summary == "replayed 0, still failing 3 (operation-failed 3), skipped 0, remaining 3")
        let after = try await #require(replayer.streamReader).all().compactMap(\.record)
        #expect(after.count == 3)
        // Attempts grow by the replay's own tries (how many the worker made depends on when the circuit opened).
        let attemptsBefore = Dictionary(uniqueKeysWithValues: records.compactMap(\.record).map { ($0.source, $0.attempts) })
        #expect(after.allSatisfy { $0.attempts > attemptsBefore[$0.source] ?? .max })
        #expect(after.allSatisfy { $0.operations.count == 2 && $0.node == edge.endpoint })

        try await edge.restart()
        try await seedKeys(edge, keys)
        replayer = Replayer(loaded: loaded, logger: quietLogger())
        result = try await replayer.run(ReplayOptions(replayerID: "test"))
        await replayer.close()
        #expect(result.replayed == 3 && result.failed == 0 && result.remaining == 0 && result.exitCode == 0)
        #expect(try existingKeys(edge, keys) == 0)
        for version in versions {
            #expect(try edge.call("GET", version) == "1")
            #expect(try harness.redis.call("GET", version) == "1", "the live node must not get the operations again")
        }
        #expect(try harness.deadLetterReasons().isEmpty)
        #expect(try harness.deadLetterRedis.keys(matching: "dead-letters:replay-lock:*").isEmpty)
    }

    // MARK: Dry run

    @Test func aDryRunChangesNothing() async throws {
        let fixture = try await ReplayFixture(cacheNodes: 2, rules: Self.bumpRules)
        let node = fixture.cache[1].endpoint
        try await seedKeys(fixture.cache[1], ["user:1", "user:2"])
        try await fixture.write([
            failedRecord(node: node, operations: [PlannedOperation(.delete(key: "user:1"), rule: "user"),
                                                  PlannedOperation(.bump(key: "version:user:1"), rule: "user")]),
            failedRecord(node: node, operations: [PlannedOperation(.delete(key: "user:2"), rule: "user")]),
        ])
        let before = try fixture.dead.call("XRANGE", "dead-letters", "-", "+")

        let result = try await fixture.replay { $0.dryRun = true }
        #expect(result.wouldReplay == 2 && result.replayed == 0 && result.exitCode == 0)
        #expect(result.records[0].operations == ["delete user:1 on primary/\(node)", "bump version:user:1 on primary/\(node)"])
        #expect(result.summary == "dry run: would replay 2 records (3 operations); nothing changed, 2 in the store")
        #expect(result.text.contains("    delete user:2 on primary/\(node)"))
        #expect(try fixture.dead.call("XRANGE", "dead-letters", "-", "+") == before)
        #expect(try fixture.dead.keys(matching: "*") == ["dead-letters"])
        #expect(try existingKeys(fixture.cache[1], ["user:1", "user:2"]) == 2)
        #expect(try fixture.cache[1].call("EXISTS", "version:user:1") == "0")
    }

    // MARK: Poison events and --reprocess

    @Test func poisonEventsCanBeInspectedAndReprocessedAfterARulesFix() async throws {
        let fixture = try await ReplayFixture(rules: """
            rules:
              - name: org
                match: { entity: org }
                delete: ["org:{tenant}:{id}"]
            """)
        try await seedKeys(fixture.cache[0], ["org:5", "org:acme:6"])
        try await fixture.process([
            #"{"entity":"org","id":"5","op":"update"}"#,        // no tenant for the template
            #"{"entity":"org","id":"#,                          // not JSON
            #"{"entity":"org","id":"6","op":"update","tenant":"acme"}"#,
        ])
        #expect(try existingKeys(fixture.cache[0], ["org:acme:6"]) == 0)

        let stored = try await fixture.stored()
        #expect(stored.map { $0.fields["reason"] } == ["unresolved-placeholder", "invalid-json"])
        let poison = try #require(stored[0].record)
        #expect(poison.rule == "org")
        #expect(String(decoding: poison.event, as: UTF8.self) == #"{"entity":"org","id":"5","op":"update"}"#)
        #expect(poison.errorMessage.contains("{tenant}"))
        #expect(stored[1].record?.event == Array(#"{"entity":"org","id":"#.utf8))

        let dry = try await fixture.replay {
            $0.dryRun = true
            $0.reprocess = true
        }
        #expect(dry.wouldFail == 2 && dry.exitCode == 0)
        #expect(dry.summary == "dry run: would replay 0 records (0 operations), 2 would still fail (invalid-json 1, unresolved-placeholder 1); nothing changed, 2 in the store")

        // Same rules: both stay, attempts incremented, counted under their reasons.
        var result = try await fixture.replay()
        #expect(result.failed == 2 && result.exitCode == 1)
        #expect(result.failedByReason.map(\.reason) == ["invalid-json", "unresolved-placeholder"])
        #expect(try await fixture.stored().compactMap(\.record).map(\.attempts) == [2, 2])

        // The rules are fixed; reprocessing applies the event and removes its record.
        try fixture.writeRules("""
            rules:
              - name: org
                match: { entity: org }
                pools: [primary]
                delete: ["org:{tenant?}:{id}", "org:{id}"]
            """)
        result = try await fixture.replay {
            $0.reprocess = true
            $0.reasons = ["unresolved-placeholder"]
        }
        #expect(result.replayed == 1 && result.failed == 0 && result.exitCode == 0)
        #expect(result.records[0].operations == ["delete org:5"])
        #expect(try existingKeys(fixture.cache[0], ["org:5"]) == 0)
        let left = try await fixture.stored()
        #expect(left.map { $0.record?.reason } == [.invalidJSON])
        #expect(left[0].record?.attempts == 2)
    }

    /// A binary-mode CloudEvent keeps its `ce_` headers in the record, so
    /// `--reprocess` reads it as the worker did (here: the tenant is a header).
    @Test func reprocessReadsABinaryCloudEventWithItsHeaders() async throws {
        let fixture = try await ReplayFixture(rules: """
            rules:
              - name: org
                match: { entity: org }
                pools: [primary]
                delete: ["org:{tenant}:{after.slug}"]
            """)
        try await seedKeys(fixture.cache[0], ["org:acme:7"])
        let headers: [(key: String, value: [UInt8]?)] = [
            ("ce_specversion", "1.0"), ("ce_id", "c-1"), ("ce_source", "/orgs"), ("ce_type", "org.changed"), ("ce_tenant", "acme"),
            ("trace", "not kept"),
        ].map { ($0.0, Array($0.1.utf8)) }
        try await fixture.process([IncomingEvent(
            source: .kafka(topic: "entity-changes", partition: 0, offset: 3),
            payload: Array(#"{"entity":"org","id":"7","op":"update"}"#.utf8), headers: headers)])

        let record = try #require(try await fixture.stored().first?.record)
        #expect(record.reason == .unresolvedPlaceholder)
        #expect(record.headers == ["ce_specversion": "1.0", "ce_id": "c-1", "ce_source": "/orgs", "ce_type": "org.changed", "ce_tenant": "acme"].mapValues { Array($0.utf8) })

        try fixture.writeRules("""
            rules:
              - name: org
                match: { entity: org }
                pools: [primary]
                delete: ["org:{tenant}:{id}"]
            """)
        let result = try await fixture.replay { $0.reprocess = true }
        #expect(result.replayed == 1 && result.remaining == 0)
        #expect(result.records.first?.operations == ["delete org:acme:7"])
        #expect(try existingKeys(fixture.cache[0], ["org:acme:7"]) == 0)
    }

    /// `--reprocess` of an operation-failed record plans the event with the current
    /// rules, but only for the record's pool and node.
    @Test func reprocessUsesTheCurrentRulesOnTheRecordsNodeOnly() async throws {
        let fixture = try await ReplayFixture(cacheNodes: 2, rules: """
            rules:
              - name: user
                match: { entity: user }
                delete: ["user:{id}", "profile:{id}"]
            """)
        try await seedKeys(fixture.cache[0], ["user:1", "profile:1"])
        try await seedKeys(fixture.cache[1], ["user:1", "profile:1"])
        try await fixture.write([failedRecord(node: fixture.cache[1].endpoint, operations: [PlannedOperation(.delete(key: "user:1"), rule: "user")])])
        let result = try await fixture.replay { $0.reprocess = true }
        #expect(result.replayed == 1)
        #expect(try existingKeys(fixture.cache[1], ["user:1", "profile:1"]) == 0)
        #expect(try existingKeys(fixture.cache[0], ["user:1", "profile:1"]) == 2)
    }

    // MARK: Failures stay

    /// Only the operations still failing stay, with attempts and the error updated.
    @Test func aPartlyFailingRecordKeepsOnlyWhatStillFails() async throws {
        let fixture = try await ReplayFixture(rules: Self.bumpRules)
        let node = fixture.cache[0].endpoint
        try await seedKeys(fixture.cache[0], ["user:1"])
        try fixture.cache[0].call("RPUSH", "version:user:1", "not-a-counter")
        try await fixture.write([failedRecord(node: node, operations: [
            PlannedOperation(.delete(key: "user:1"), rule: "user"), PlannedOperation(.bump(key: "version:user:1"), rule: "user"),
        ], attempts: 3)])
        let originalID = try await fixture.stored()[0].id

        let result = try await fixture.replay()
        #expect(result.failed == 1 && result.exitCode == 1)
        #expect(result.records[0].detail?.hasPrefix("WRONGTYPE") == true)
        #expect(try existingKeys(fixture.cache[0], ["user:1"]) == 0)
        let stored = try await fixture.stored()
        #expect(stored.count == 1)
        #expect(stored[0].id != originalID)
        let record = try #require(stored[0].record)
        #expect(record.operations.map(\.operation) == [.bump(key: "version:user:1")])
        #expect(record.attempts == 4)
        #expect(record.errorClass == "WRONGTYPE")
        #expect(record.firstFailedAt == "2026-11-20T10:00:00.000Z")
        #expect(record.lastFailedAt != record.firstFailedAt)
        #expect(record.source == .kafka(topic: "entity-changes", partition: 0, offset: 7))

        // Fixed by hand; replaying again succeeds and empties the store.
        try fixture.cache[0].call("DEL", "version:user:1")
        let again = try await fixture.replay()
        #expect(again.replayed == 1 && again.remaining == 0 && again.exitCode == 0)
        #expect(try fixture.cache[0].call("GET", "version:user:1") == "1")
    }

    // MARK: Concurrency

    /// INCR is not idempotent: two replays at once must still apply each record once.
    @Test func concurrentReplaysApplyEachRecordOnce() async throws {
        let fixture = try await ReplayFixture(rules: Self.bumpRules)
        let node = fixture.cache[0].endpoint
        let count = 60
        try await fixture.write((0..<count).map { failedRecord(node: node, operations: [PlannedOperation(.bump(key: "counter:\($0)"), rule: "user")]) })
        let first = try fixture.replayer()
        let second = try fixture.replayer()
        async let a = first.run(ReplayOptions(replayerID: "replay-a"))
        async let b = second.run(ReplayOptions(replayerID: "replay-b"))
        let results = try await [a, b]
        await first.close()
        await second.close()
        #expect(results[0].replayed + results[1].replayed == count)
        #expect(results.allSatisfy { $0.failed == 0 && $0.exitCode == 0 })
        for index in 0..<count {
            #expect(try fixture.cache[0].call("GET", "counter:\(index)") == "1")
        }
        #expect(try await fixture.stored().isEmpty)
    }

    @Test func aRecordLockedByAnotherReplayIsSkipped() async throws {
        let fixture = try await ReplayFixture(rules: Self.bumpRules)
        try await fixture.write([
            failedRecord(node: fixture.cache[0].endpoint, operations: [PlannedOperation(.bump(key: "counter:1"), rule: "user")]),
            failedRecord(node: fixture.cache[0].endpoint, operations: [PlannedOperation(.bump(key: "counter:2"), rule: "user")]),
        ])
        let ids = try await fixture.stored().map(\.id)
        try fixture.dead.call("SET", "dead-letters:replay-lock:\(ids[0])", "someone-else", "PX", "60000")
        let result = try await fixture.replay()
        #expect(result.replayed == 1 && result.skipped == 1 && result.exitCode == 0)
        #expect(result.summary == "replayed 1, still failing 0, skipped 1 (locked by another replay 1), remaining 1")
        #expect(try fixture.cache[0].call("EXISTS", "counter:1") == "0")
        #expect(try fixture.dead.call("GET", "dead-letters:replay-lock:\(ids[0])") == "someone-else")
    }

    // MARK: Filters

    @Test func filtersSelectRecords() async throws {
        let fixture = try await ReplayFixture(cacheNodes: 2, rules: Self.bumpRules)
        let (first, second) = (fixture.cache[0].endpoint, fixture.cache[1].endpoint)
        try await fixture.write([
            failedRecord(node: first, operations: [PlannedOperation(.delete(key: "a"), rule: "user")]),
            failedRecord(node: second, operations: [PlannedOperation(.delete(key: "b"), rule: "user")]),
            failedRecord(node: second, operations: [PlannedOperation(.delete(key: "c"), rule: "other")]),
        ])
        try await Task.sleep(for: .milliseconds(30))
        let boundary = Int64((Date().timeIntervalSince1970 * 1000).rounded())
        try await Task.sleep(for: .milliseconds(30))
        try await fixture.process([#"{"entity":"user","op":"update"}"#])  // schema-violation
        try await fixture.write([failedRecord(node: first, operations: [PlannedOperation(.delete(key: "d"), rule: "user")])])

        func keys(_ result: ReplayResult) -> [String] {
            result.records.map { $0.operations.first.map { String($0.split(separator: " ")[1]) } ?? $0.reason }
        }
        func dry(_ configure: (inout ReplayOptions) -> Void) async throws -> [String] {
            keys(try await fixture.replay { options in
                options.dryRun = true
                configure(&options)
            })
        }
        #expect(try await dry { _ in } == ["a", "b", "c", "schema-violation", "d"])
        #expect(try await dry { $0.reasons = ["operation-failed"] } == ["a", "b", "c", "d"])
        #expect(try await dry { $0.reasons = ["schema-violation"] } == ["schema-violation"])
        #expect(try await dry { $0.rules = ["other"] } == ["c"])
        #expect(try await dry { $0.nodes = [second] } == ["b", "c"])
        #expect(try await dry { $0.nodes = ["127.0.0.1:\(fixture.cache[0].port)"] } == ["a", "d"])
        #expect(try await dry { $0.limit = 2 } == ["a", "b"])
        #expect(try await dry { $0.sinceMilliseconds = boundary } == ["schema-violation", "d"])
        #expect(try await dry {
            $0.sinceMilliseconds = boundary
            $0.nodes = [first]
        } == ["d"])

        // A filtered real run leaves the rest alone.
        let result = try await fixture.replay { $0.nodes = [second] }
        #expect(result.replayed == 2 && result.remaining == 3)
        #expect(try await dry { _ in } == ["a", "schema-violation", "d"])
    }

    // MARK: Metrics

    @Test func replayAndWritesAreCounted() async throws {
        let fixture = try await ReplayFixture(rules: Self.bumpRules)
        let node = fixture.cache[0].endpoint
        try await fixture.write([
            failedRecord(node: node, operations: [PlannedOperation(.delete(key: "a"), rule: "user")]),
            failedRecord(node: "127.0.0.1:1", operations: [PlannedOperation(.delete(key: "b"), rule: "user")]),
        ])
        let metrics = RecordingMetrics()
        let replayer = try Replayer(loaded: fixture.loaded(), logger: quietLogger(), metrics: metrics)
        let result = try await replayer.run(ReplayOptions(replayerID: "test"))
        await replayer.close()
        #expect(result.replayed == 1 && result.failed == 1)
        #expect(result.records[1].detail?.contains("is not in pool 'primary'") == true)
        #expect(metrics.value(DeadLetterMetrics.replayed, ["result": "succeeded"]) == 1)
        #expect(metrics.value(DeadLetterMetrics.replayed, ["result": "failed"]) == 1)
        #expect(metrics.value(DeadLetterMetrics.remaining, [:]) == 1)
    }

    // MARK: Rate

    @Test func theRateLimitPacesOperations() async throws {
        let fixture = try await ReplayFixture(rules: Self.bumpRules)
        try await fixture.write((0..<10).map {
            failedRecord(node: fixture.cache[0].endpoint, operations: [
                PlannedOperation(.delete(key: "k\($0)"), rule: "user"), PlannedOperation(.delete(key: "j\($0)"), rule: "user"),
            ])
        })
        let start = ContinuousClock.now
        let result = try await fixture.replay { $0.ratePerSecond = 50 }
        let elapsed = ContinuousClock.now - start
        #expect(result.replayed == 10)
        // 20 operations at 50/s: the last pair starts 18/50 s after the first.
        #expect(elapsed >= .milliseconds(340), "\(elapsed)")
    }

    // MARK: Records and configuration

    @Test func recordsRoundTripThroughJSON() throws {
        var record = failedRecord(node: "[::1]:6380", operations: [
            PlannedOperation(.delete(key: "a"), rule: "r"), PlannedOperation(.deletePattern(pattern: "s:1:*"), rule: "r"),
            PlannedOperation(.purgeTag(setKey: "tag:t"), rule: "r"), PlannedOperation(.expire(key: "p", ttlMilliseconds: 5000), rule: "r"),
            PlannedOperation(.bump(key: "v"), rule: "r"),
            PlannedOperation(.precompute(PrecomputeJob(stream: "jobs", job: "warm", args: [.init(name: "id", value: "1")], eventID: nil, occurredAt: nil)), rule: "q"),
        ])
        record.event = [0xff, 0x00, 0x41]
        // A header that is not UTF-8 is kept as its bytes (base64), so replay rejects it again instead of repairing it.
        record.headers = ["ce_specversion": Array("1.0".utf8), "ce_tenant": [0x61, 0xff, 0xfe]]
        record.lastFailedAt = "2026-11-21T10:00:00.000Z"
        let decoded = try DeadLetter(jsonText: record.json.serialized())
        #expect(decoded.json == record.json)
        #expect(decoded.event == [0xff, 0x00, 0x41])
        #expect(decoded.headers == record.headers)
        #expect(throws: DeadLetterDecodingError.self) { try DeadLetter(jsonText: #"{"version":2}"#) }
    }

    @Test func anUnavailableStoreStopsTheRunWithAnError() async throws {
        let fixture = try await ReplayFixture(rules: Self.bumpRules)
        fixture.dead.kill()
        await #expect(throws: ReplayStoreUnavailable.self) { try await fixture.replay() }
    }
}

/// Keeps the last value of every counter and gauge, by label and dimensions.
final class RecordingMetrics: MetricsFactory, Sendable {
    private let values = Mutex<[String: Double]>([:])

    private static func key(_ label: String, _ dimensions: [(String, String)]) -> String {
        label + "{" + dimensions.sorted { $0.0 < $1.0 }.map { "\($0.0)=\($0.1)" }.joined(separator: ",") + "}"
    }

    func value(_ label: String, _ dimensions: [String: String]) -> Double? {
        values.withLock { $0[Self.key(label, dimensions.map { ($0.key, $0.value) })] }
    }

    fileprivate func add(_ key: String, _ amount: Double) { values.withLock { $0[key, default: 0] += amount } }
    fileprivate func set(_ key: String, _ value: Double) { values.withLock { $0[key] = value } }

    private final class Handler: CounterHandler, RecorderHandler, TimerHandler, Sendable {
        let key: String
        let metrics: RecordingMetrics
        init(_ key: String, _ metrics: RecordingMetrics) {
            self.key = key
            self.metrics = metrics
        }
        func increment(by amount: Int64) { metrics.add(key, Double(amount)) }
        func reset() { metrics.set(key, 0) }
        func record(_ value: Int64) { metrics.set(key, Double(value)) }
        func record(_ value: Double) { metrics.set(key, value) }
        func recordNanoseconds(_ duration: Int64) { metrics.set(key, Double(duration)) }
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        Handler(Self.key(label, dimensions), self)
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        Handler(Self.key(label, dimensions), self)
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        Handler(Self.key(label, dimensions), self)
    }

    func destroyCounter(_ handler: any CounterHandler) {}
    func destroyRecorder(_ handler: any RecorderHandler) {}
    func destroyTimer(_ handler: any TimerHandler) {}
}
