import Foundation
import InvalidatorCore
@testable import InvalidatorRuntime
import TestSupport
import Testing

/// A purge that scans for longer than the stall timeout is progress, not a stall:
/// were it reported stalled, the pod would be restarted and the event redelivered,
/// to scan again, forever.
@Suite(.timeLimit(.minutes(2))) struct LongPurgeLivenessTests {
    @Test func aPatternScanLongerThanTheStallTimeoutKeepsItsLoopAlive() async throws {
        let cache = try await RedisServer.start()
        let dead = try await RedisServer.start()
        try await cache.pipe((0..<60_000).map { ["SET", "session:7:\($0)", "v"] })
        // Every reply 150 ms late: the scan's 60-odd pages (a SCAN and an UNLINK each) take
        // 18 s or more, however fast the machine.
        let network = try TCPProxy(to: cache.port)
        network.delayReplies(by: .milliseconds(150))
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("invalidator-liveness-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let configPath = folder.appendingPathComponent("invalidator.yaml")
        try """
            pools:
              # A late reply is slow, never timed out and retried: one page is one step.
              primary: { nodes: ["\(network.endpoint)"], command_timeout: 30s }
              dead: { nodes: ["\(dead.endpoint)"] }
            rules:
              - { name: sessions, match: { entity: user }, patterns: ["session:{id}:*"] }
            dead_letters: { pool: dead, stream: dead-letters }
            sources: { redis_pubsub: { pool: dead, channels: [entity-changes] } }
            """.write(to: configPath, atomically: true, encoding: .utf8)
        let loaded = try ConfigurationFiles.load(configPath: configPath.path, environment: [:])
        let pools = PoolSet(configuration: loaded.configuration, logger: quietLogger())
        let pipeline = EventPipeline(
            rules: RulesState(Planner(rules: loaded.rules, pools: loaded.configuration.poolTargets)), pools: pools,
            deadLetters: RedisStreamDeadLetterStore(pool: pools.pool(named: "dead")!, stream: "dead-letters"),
            workerID: "test-worker", logger: quietLogger())
        // Well above what one page takes (300 ms), even on a machine busy with other tests.
        let liveness = LivenessMonitor(stallTimeout: .seconds(5))
        let prepared = await pipeline.prepare([IncomingEvent(source: .manual, payload: Array(#"{"entity":"user","id":"7","op":"update"}"#.utf8))])

        let started = ContinuousClock.now
        let applying = Task {
            await liveness.monitor("kafka") { heartbeat in await pipeline.apply(prepared, heartbeat: heartbeat, redeletes: nil) }
        }
        try #require(try await eventually { !liveness.loops.isEmpty })
        // The loop is listed until the batch is applied.
        var stalls: [String] = []
        while let status = liveness.loops.first {
            if status.isStalled { stalls.append(status.description) }
            try await Task.sleep(for: .milliseconds(50))
        }
        let result = await applying.value

        try #require(ContinuousClock.now - started > liveness.stallTimeout * 3, "the scan outlasted the stall timeout")
        #expect(stalls.isEmpty, "\(stalls.count) samples stalled, the first: \(stalls.first ?? "")")
        #expect(result.isDurable)
        #expect(try cache.keys(matching: "session:*").isEmpty)
        #expect(try dead.call("EXISTS", "dead-letters") == "0")
        await pools.close()
    }
}
