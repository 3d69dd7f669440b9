import Foundation
import InvalidatorRuntime
import TestSupport
import Testing

@Suite(.timeLimit(.minutes(3))) struct WorkerResilienceTests {
    func userEvents(_ ids: Range<Int>) -> [String] {
        ids.map { #"{"entity":"user","id":"\#($0)","op":"update"}"# }
    }

    @Test func twoWorkersShareTheGroupAndTheSurvivorTakesOver() async throws {
        let harness = try await WorkerHarness(partitions: 8)
        let keys = (0..<4000).map { "user:\($0)" }
        try await seedKeys(harness.redis, keys)
        let first = RunningWorker(try harness.makeWorker())
        let second = RunningWorker(try harness.makeWorker())
        // Events keep coming (ids 0..<2000, round and round) until the group has formed
        // and both workers have processed some: however long the group takes to form.
        var produced = 0
        #expect(try await eventually(timeout: .seconds(60)) {
            let start = produced % 2000
            try await harness.produce(userEvents(start..<start + 50))
            produced += 50
            return (first.worker.kafka?.processedEvents ?? 0) > 0 && (second.worker.kafka?.processedEvents ?? 0) > 0
        })
        if produced < 2000 {
            try await harness.produce(userEvents(produced..<2000))
            produced = 2000
        }
        try await first.stop()
        try await harness.produce(userEvents(2000..<4000))
        #expect(try await eventually(timeout: .seconds(60)) { try existingKeys(harness.redis, keys) == 0 })
        try await second.stop()
        let committed = try await harness.committedOffsets()
        #expect(committed.values.reduce(0, +) == produced + 2000, "\(committed.sorted { $0.key < $1.key })")
    }

    @Test func consumptionResumesAfterTheBrokerWasDown() async throws {
        let harness = try await WorkerHarness(partitions: 2)
        let keys = (0..<400).map { "user:\($0)" }
        try await seedKeys(harness.redis, keys)
        try await harness.produce(userEvents(0..<200))
        let running = RunningWorker(try harness.makeWorker())
        #expect(try await eventually { try existingKeys(harness.redis, Array(keys[0..<200])) == 0 })
        try harness.kafka.setBrokerDown(1)
        try await Task.sleep(for: .seconds(3))
        try harness.kafka.setBrokerUp(1)
        try await harness.produce(userEvents(200..<400))
        #expect(try await eventually(timeout: .seconds(60)) { try existingKeys(harness.redis, keys) == 0 })
        try await running.stop()
        #expect(try await harness.committedTotal() == 400)
    }

    @Test func aRedisNodeDownHoldsCommitsUntilItIsBack() async throws {
        // Enough attempts that retries outlast the outage: nothing is dead-lettered,
        // and nothing is committed past the events still retrying.
        // Backoff long enough that the node's circuit stays closed through the outage
        // (five failed connects in a row open it; four full-jitter waits from 1s rarely sum under 1s).
        let harness = try await WorkerHarness(partitions: 1, retryAttempts: 100, initialBackoff: "1s")
        harness.redis.kill()
        try await harness.produce(userEvents(0..<5))
        let running = RunningWorker(try harness.makeWorker())
        try await Task.sleep(for: .seconds(1))
        #expect(try await harness.committedTotal() == 0)
        try await harness.redis.restart()
        try await seedKeys(harness.redis, (0..<5).map { "user:\($0)" })
        #expect(try await eventually { try await harness.committedTotal() == 5 })
        try await running.stop()
        #expect(try harness.deadLetterReasons().isEmpty)
    }

    /// The real executable, as Kubernetes runs it: SIGTERM while events are in
    /// flight (delayed redeletes pending) → exit 0, and every committed event was applied.
    @Test func sigtermWithWorkInFlightLosesNothing() async throws {
        let harness = try await WorkerHarness(partitions: 4)
        let count = 2000
        let keys = (0..<count).map { "page:\($0)" }
        try await seedKeys(harness.redis, keys)
        try await harness.produce((0..<count).map { #"{"entity":"page","id":"\#($0)","op":"update"}"# })

        // A free port: a process left over elsewhere may hold the default 9090 (and http.listen takes no port 0).
        let listen = "127.0.0.1:\(try RedisServer.freePort())"
        let process = try ChildProcess(
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("invalidator").path,
            ["run", "--config", harness.configPath.path, "--log-level", "error"],
            environment: ProcessInfo.processInfo.environment.merging(["INVALIDATOR__HTTP__LISTEN": listen]) { $1 }
        )
        #expect(try await eventually { try existingKeys(harness.redis, keys) < count })
        process.terminate()
        #expect(process.waitForExit() == .success)

        // Committed implies applied: no key of an event before a committed offset survives.
        let committed = try await harness.committedOffsets()
        let committedKeys = (0..<count).filter { Int64($0 / 4) < (committed[Int32($0 % 4)] ?? 0) }.map { "page:\($0)" }
        #expect(try existingKeys(harness.redis, committedKeys) == 0)

        // Whatever was not committed is picked up by the next worker.
        let next = RunningWorker(try harness.makeWorker())
        #expect(try await eventually(timeout: .seconds(60)) { try existingKeys(harness.redis, keys) == 0 })
        try await next.stop()
        #expect(try await harness.committedTotal() == Int64(count))
    }
}
