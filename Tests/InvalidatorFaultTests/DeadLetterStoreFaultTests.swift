import Foundation
import TestSupport
import Testing

/// The dead-letter store fails: it is down, at its record cap, or at `maxmemory`.
/// The cache node is down throughout, so every event needs a dead letter: the
/// worker keeps running, commits nothing past what is stored, and once there is
/// room again every event's key is deleted, directly or after `replay`.
@Suite(.serialized, .timeLimit(.minutes(3))) struct DeadLetterStoreFaultTests {
    /// A mock Kafka, a cache node, a dead-letter node, and a config using them.
    final class Setup: Sendable {
        let kafka: FaultKafka
        let cache: RedisServer
        let dead: RedisServer
        let scenario: Scenario
        let group = "dead-letter-faults-\(UUID().uuidString.prefix(8))"
        let configPath: String

        init(maxRecords: Int, deadLetterServerArguments: [String] = []) async throws {
            kafka = try FaultKafka()
            cache = try await RedisServer.start()
            dead = try await RedisServer.start(deadLetterServerArguments)
            scenario = try Scenario()
            configPath = try scenario.write("invalidator.yaml", """
                sources:
                  kafka:
                    brokers: "\(kafka.bootstrapServers)"
                    topics: ["\(kafka.topic)"]
                    group: \(group)
                    properties: { fetch.wait.max.ms: "5", session.timeout.ms: "6000" }
                pools:
                  cache: { nodes: ["\(cache.endpoint)"], connect_timeout: 300ms, command_timeout: 500ms }
                  dead: { nodes: ["\(dead.endpoint)"], connect_timeout: 300ms, command_timeout: 500ms }
                rules:
                  - { name: user, match: { entity: user }, pools: [cache], delete: ["user:{id}"] }
                retry: { attempts: 2, initial_backoff: 10ms, max_backoff: 50ms }
                dead_letters: { pool: dead, stream: "dead-letters", max_records: \(maxRecords) }
                shutdown: { drain_timeout: 5s }
                """)
        }

        func storedRecords() throws -> Int {
            Int(try dead.call("XLEN", "dead-letters")) ?? -1
        }

        func committed() async throws -> Int64 {
            try await kafka.committedTotal(group: group)
        }

        /// Brings the cache node back with every event's key in place, for replay and the worker to delete.
        func restartCache(keys: [String]) async throws {
            try await cache.restart()
            try await cache.seed(keys)
        }

        /// `invalidator replay`; the number of records it replayed.
        func replay() throws -> Int? {
            let (exit, output) = try runInvalidator(["replay", "--config", configPath])
            #expect(exit == .success, "\(output)")
            let summary = output.split(separator: "\n").last { $0.hasPrefix("replayed ") }
            return summary.flatMap { Int($0.dropFirst("replayed ".count).prefix { $0.isNumber }) }
        }
    }

    func keys(_ ids: Range<Int>) -> [String] {
        ids.map { "user:\($0)" }
    }

    @Test func deadLetterStoreKilledAndBackLosesNothing() async throws {
        let setup = try await Setup(maxRecords: 0)
        setup.cache.kill()
        setup.dead.kill()
        let worker = try InvalidatorProcess(run: setup.configPath)
        try await setup.kafka.produce(events("user", 0..<200))
        #expect(try await eventually { worker.log.contains("dead-letter store unavailable; holding commits") })
        #expect(try await holds(for: .seconds(2)) { try await setup.committed() == 0 && worker.isRunning })

        try await setup.dead.restart()
        let resumed = try await timeUntil(timeout: .seconds(30)) { try setup.storedRecords() == 200 }
        #expect(resumed != nil)
        #expect(try await eventually { try await setup.committed() == 200 })
        report("dead-letter store killed while 200 events needed it, then restarted",
               "nothing committed meanwhile; all 200 records stored \(resumed.map { "\($0)" } ?? "never") after its restart")

        try await setup.restartCache(keys: keys(0..<200))
        #expect(try setup.replay() == 200)
        #expect(try existingKeys(setup.cache, keys(0..<200)) == 0)
        #expect(try setup.storedRecords() == 0)
        #expect(worker.terminate() == .success)
    }

    @Test func aStreamAtItsCapHoldsTheWorkerUntilReplayMakesRoom() async throws {
        let cap = 50
        let setup = try await Setup(maxRecords: cap)
        setup.cache.kill()
        let worker = try InvalidatorProcess(run: setup.configPath, logLevel: "info")
        try await setup.kafka.produce(events("user", 0..<80))
        #expect(try await eventually { try setup.storedRecords() >= cap })
        try await setup.kafka.produce(events("user", 80..<120))
        #expect(try await eventually { try worker.get("/healthz").body.contains("(waiting: dead-letter store full (") })
        let atCap = try setup.storedRecords()
        #expect(try worker.get("/healthz").body.contains("waiting: dead-letter store full (\(atCap) records, cap \(cap))"))
        // Commits go out every 100 ms: the last stored record's commit may still be on its way.
        #expect(try await eventually { try await setup.committed() == Int64(atCap) })
        #expect(try await holds(for: .seconds(2)) {
            let committed = try await setup.committed()
            return try setup.storedRecords() == atCap && committed == Int64(atCap) && worker.get("/healthz").status == 200
        })
        let bytes = try worker.metric("invalidator_dead_letter_store_bytes") ?? 0
        #expect(bytes > 0)
        #expect(worker.log.components(separatedBy: "dead-letter stream is full").count - 1 == 1, "said once, not per retry")

        try await setup.restartCache(keys: keys(0..<120))
        #expect(try setup.replay() == atCap)
        let resumed = try await timeUntil(timeout: .seconds(30)) { try await setup.committed() == 120 }
        #expect(resumed != nil)
        #expect(worker.log.contains("dead-letter stream is under its cap again"))
        report("dead-letter stream at its cap (max_records \(cap))",
               "\(atCap) records held (\(Int(bytes) / max(atCap, 1)) bytes each by MEMORY USAGE); consuming resumed \(resumed.map { "\($0)" } ?? "never") after replay emptied it")
        // Events that waited for room were stored while the node was down; the rest applied directly.
        _ = try setup.replay()
        #expect(try existingKeys(setup.cache, keys(0..<120)) == 0)
        #expect(try setup.storedRecords() == 0)
        #expect(worker.terminate() == .success)
    }

    @Test func aDeadLetterNodeAtMaxmemoryHoldsTheWorkerUntilItHasRoom() async throws {
        let setup = try await Setup(maxRecords: 0, deadLetterServerArguments: ["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"])
        setup.cache.kill()
        let worker = try InvalidatorProcess(run: setup.configPath)
        let count = 3000
        try await setup.kafka.produce(events("user", 0..<count))
        #expect(try await eventually { worker.log.contains("OOM command not allowed") })
        let stored = try setup.storedRecords()
        #expect(stored < count)
        // A batch is stored whole or not at all: one record per committed event, none twice.
        #expect(try await holds(for: .seconds(2)) {
            let committed = try await setup.committed()
            return try setup.storedRecords() == stored && committed == Int64(stored) && worker.isRunning
        })

        try setup.dead.call("CONFIG", "SET", "maxmemory", "0")
        let resumed = try await timeUntil(timeout: .seconds(60)) { try await setup.committed() == Int64(count) }
        #expect(resumed != nil)
        #expect(try setup.storedRecords() == count)
        report("dead-letter node at maxmemory 2mb, noeviction",
               "\(stored) of \(count) records stored before OOM, none twice; all committed \(resumed.map { "\($0)" } ?? "never") after maxmemory was lifted")

        try await setup.restartCache(keys: keys(0..<count))
        #expect(try setup.replay() == count)
        #expect(try existingKeys(setup.cache, keys(0..<count)) == 0)
        #expect(worker.terminate() == .success)
    }

    @Test func validateWarnsWhenTheDeadLetterNodeMayEvictOrLoseRecords() async throws {
        let setup = try await Setup(
            maxRecords: 0, deadLetterServerArguments: ["--maxmemory-policy", "allkeys-lru", "--appendonly", "no", "--save", ""])
        let (exit, output) = try runInvalidator(["validate", "--config", setup.configPath, "--check-connectivity"])
        #expect(exit == .success, "warnings do not fail the check: \(output)")
        let target = "dead-letter stream dead-letters on pool dead node \(setup.dead.endpoint)"
        #expect(output.contains("\(target): maxmemory-policy allkeys-lru, appendonly no, save \"\"\n"), "\(output)")
        #expect(output.contains("warning: \(target): maxmemory-policy allkeys-lru lets Redis evict any key once the node is full"))
        #expect(output.contains("warning: \(target): no persistence (appendonly no, save \"\")"))

        try setup.dead.call("CONFIG", "SET", "maxmemory-policy", "volatile-lru")
        try setup.dead.call("CONFIG", "SET", "appendonly", "yes")
        let (_, safe) = try runInvalidator(["validate", "--config", setup.configPath, "--check-connectivity"])
        #expect(safe.contains("\(target): maxmemory-policy volatile-lru, appendonly yes, save \"\"\n"), "\(safe)")
        #expect(!safe.contains("warning:"))
    }
}
