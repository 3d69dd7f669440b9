import Foundation
import InvalidatorRuntime
import TestSupport
import Testing

/// `sources.redis_stream.block`: an idle reader waits in one long XREADGROUP, yet an
/// entry that arrives is read at once and shutdown does not wait for the block to end.
@Suite(.timeLimit(.minutes(2))) struct StreamBlockTests {
    static let sources = """
          redis_stream:
            pool: primary
            streams: ["entity-changes"]
            group: invalidator
            block: 30s
            claim_idle: 1h
        """

    /// How many XREADGROUP commands the node has run since start.
    func readCommands(_ harness: RedisSourceHarness) throws -> Int {
        let stats = try harness.redis.call("INFO", "commandstats")
        guard let line = stats.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("cmdstat_xreadgroup:") }),
              let calls = line.split(separator: ",").first?.split(separator: "=").last
        else { return 0 }
        return Int(calls) ?? -1
    }

    @Test func anIdleReaderBlocksLongYetReadsANewEntryAtOnceAndStopsPromptly() async throws {
        let harness = try await RedisSourceHarness(sources: Self.sources)
        try await seedKeys(harness.redis, ["user:1"])
        let running = RunningWorker(try harness.makeWorker())
        let source = try #require(running.worker.redisStream)
        #expect(try await eventually { source.isSubscribed })

        // Idle: one XREADGROUP waiting, where a 100 ms block would have sent about 30.
        let before = try readCommands(harness)
        try await Task.sleep(for: .seconds(3))
        let idleReads = try readCommands(harness) - before
        #expect(idleReads <= 1, "\(idleReads) XREADGROUP commands in 3 s of idling")

        // Well into the block: the entry ends it.
        try await harness.add([#"{"entity":"user","id":"1","op":"update"}"#])
        let pickedUp = try await timeUntil(timeout: .seconds(20)) { try existingKeys(harness.redis, ["user:1"]) == 0 }
        #expect(pickedUp != nil)
        #expect(pickedUp.map { $0 < .seconds(5) } ?? false, "read after \(String(describing: pickedUp)); the block is 30 s")
        #expect(try await eventually { try harness.pending() == 0 })

        // Shutdown while the reader is blocked again: CLIENT UNBLOCK ends the wait.
        try await Task.sleep(for: .seconds(1))
        let stopping = ContinuousClock.now
        try await running.stop()
        let stopped = ContinuousClock.now - stopping
        #expect(stopped < .seconds(5), "stopped after \(stopped); the block is 30 s")
        #expect(source.processedEvents == 1)
        print("FIGURE stream block 30s: \(idleReads) XREADGROUP in 3 s idle; entry applied \(pickedUp.map { "\($0)" } ?? "never") after XADD; stopped \(stopped) after shutdown began")
    }
}
