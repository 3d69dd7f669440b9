import Foundation
import InvalidatorCore
import InvalidatorRuntime
import Logging
import TestDoubles
import TestSupport
import Testing

/// The dead-letter stream's cap (`dead_letters.max_records`) and the checks of the
/// node that holds it, in a worker running in process.
@Suite(.timeLimit(.minutes(2))) struct DeadLetterStoreLimitsTests {
    func userEvents(_ ids: Range<Int>) -> [String] {
        ids.map { #"{"entity":"user","id":"\#($0)","op":"update"}"# }
    }

    /// The cache node is down, so every event is dead-lettered, until the stream
    /// reaches its cap: then nothing more is written or committed, `/healthz` stays
    /// 200 and says why, and the log says it once. A replay that empties the stream
    /// lets consumption resume by itself; in the end every event's key is deleted.
    @Test func aFullStreamStopsConsumptionUntilReplayMakesRoom() async throws {
        let cap = 20
        let harness = try await WorkerHarness(partitions: 1, deadLetterMaxRecords: cap)
        harness.redis.kill()
        let capture = LogCapture()
        let observed = try ObservedWorker(harness, logger: Logger(label: "test") { _ in CapturingLogHandler(capture: capture) })
        let port = try await observed.port()
        func length() throws -> Int { Int(try harness.deadLetterRedis.call("XLEN", "dead-letters")) ?? -1 }

        // However the first events are batched, the stream holds the cap or more once they are stored.
        try await harness.produce(userEvents(0..<30))
        #expect(try await eventually { try length() >= cap })
        try await harness.produce(userEvents(30..<60))
        #expect(try await eventually {
            try await httpGet(port: port, path: "/healthz").body.contains("(waiting: dead-letter store full (\(try length()) records, cap \(cap)))")
        })
        // Several retries go by: nothing more is stored, nothing is committed past
        // what is stored (one record per event here), and the worker is alive.
        let stored = try length()
        // Commits go out every 100 ms: the last stored record's commit may still be on its way.
        #expect(try await eventually { try await harness.committedTotal() == stored })
        #expect(try await holds(for: .seconds(2)) {
            let committed = try await harness.committedTotal()
            let health = try await httpGet(port: port, path: "/healthz")
            return try length() == stored && committed == stored && health.status == 200
        })
        #expect(stored < 60)
        #expect(observed.value(DeadLetterMetrics.storeBytes, [:]).map { $0 > 0 } == true, "the stream's memory is sampled")
        #expect(capture.lines.filter { $0.contains("dead-letter stream is full") }.count == 1, "once per episode, not per retry")

        try await harness.redis.restart()
        let keys = (0..<60).map { "user:\($0)" }
        try await seedKeys(harness.redis, keys)
        // The node's circuit closed again (readiness probes it): the batches still waiting
        // behind the stored one apply instead of refilling the stream within the cool-down.
        #expect(try await eventually { try await httpGet(port: port, path: "/readyz").status == 200 })
        let loaded = try ConfigurationFiles.load(configPath: harness.configPath.path, environment: [:])
        #expect(try await runReplay(loaded) { _ in }.replayed == stored)
        // The waiting batch is stored (its operations had failed while the node was down), then the source moves on.
        #expect(try await eventually { try await harness.committedTotal() == 60 })
        #expect(capture.lines.filter { $0.contains("dead-letter stream is under its cap again") }.count == 1)
        #expect(try await eventually { try await !httpGet(port: port, path: "/healthz").body.contains("waiting") })
        let waited = try length()
        #expect(try await runReplay(loaded) { _ in }.replayed == waited)
        #expect(try existingKeys(harness.redis, keys) == 0, "every event's key is deleted, directly or by replay")
        #expect(try length() == 0)
        try await observed.running.stop()
    }

    /// At start the worker reads the dead-letter node's eviction policy and
    /// persistence, and warns about each risk once.
    @Test func theWorkerWarnsWhenTheDeadLetterNodeMayEvictOrLoseRecords() async throws {
        func startupLines(_ arguments: [String]) async throws -> [String] {
            let harness = try await WorkerHarness(partitions: 1, deadLetterServerArguments: arguments)
            let capture = LogCapture()
            let observed = try ObservedWorker(harness, logger: Logger(label: "test") { _ in CapturingLogHandler(capture: capture) })
            _ = try await observed.port()
            // The node is inspected once, just before the stream is first counted.
            #expect(try await eventually { observed.value(DeadLetterMetrics.remaining, [:]) != nil })
            try await observed.running.stop()
            return capture.lines.filter { $0.contains("dead letters at risk") || $0.contains("dead-letter node's eviction policy") }
        }

        let risky = try await startupLines(["--maxmemory-policy", "allkeys-lru"])
        #expect(risky.count == 2, "\(risky)")
        #expect(risky.contains { $0.hasPrefix("warning ") && $0.contains("maxmemory-policy allkeys-lru lets Redis evict any key") })
        #expect(risky.contains { $0.hasPrefix("warning ") && $0.contains("no persistence (appendonly no, save \"\")") })

        #expect(try await startupLines(["--maxmemory-policy", "volatile-lru", "--appendonly", "yes"]).isEmpty)

        let managed = try await startupLines(["--rename-command", "CONFIG", ""])
        #expect(managed.count == 1, "\(managed)")
        #expect(managed.first?.hasPrefix("notice ") == true)
        #expect(managed.first?.contains("maxmemory-policy unknown") == true)
    }

    /// `validate --check-connectivity`'s line for the dead-letter node: its settings
    /// and warnings, and "unknown" (no failure) where CONFIG is renamed.
    @Test func theConnectivityCheckReportsTheDeadLetterNodeSettings() async throws {
        let harness = try await WorkerHarness(partitions: 1, deadLetterServerArguments: ["--maxmemory-policy", "allkeys-lfu"])
        let loaded = try ConfigurationFiles.load(configPath: harness.configPath.path, environment: [:])
        let results = await ConnectivityCheck.run(loaded.configuration, kafkaTimeout: .seconds(5), logger: quietLogger())
        let node = try #require(results.first { $0.target.hasPrefix("dead-letter stream") })
        #expect(node.description == "dead-letter stream dead-letters on pool dead node \(harness.deadLetterRedis.endpoint): maxmemory-policy allkeys-lfu, appendonly no, save \"\"")
        #expect(node.isOK)
        #expect(node.warnings.count == 2)

        let managed = try await RedisServer.start(["--rename-command", "CONFIG", ""])
        var configuration = loaded.configuration
        configuration.pools[1].nodes = [try #require(HostPort(managed.endpoint))]
        let unknown = try #require(await ConnectivityCheck.run(configuration, kafkaTimeout: .seconds(5), logger: quietLogger())
            .first { $0.target.hasPrefix("dead-letter stream") })
        #expect(unknown.isOK, "an unreadable setting is unknown, not a failure")
        #expect(unknown.description.contains("maxmemory-policy unknown, appendonly unknown, save unknown, unknown because: ERR unknown command 'CONFIG'"))
        #expect(unknown.warnings.isEmpty)
    }
}
