import Foundation
import InvalidatorRuntime
import TestSupport
import Testing

@Suite(.timeLimit(.minutes(2))) struct WorkerEndToEndTests {
    func userEvents(_ ids: Range<Int>) -> [String] {
        ids.map { #"{"entity":"user","id":"\#($0)","op":"update"}"# }
    }

    @Test func producedEventsDeleteExactlyTheirKeys() async throws {
        let harness = try await WorkerHarness()
        let doomed = (0..<200).map { "user:\($0)" }
        let kept = (200..<260).map { "user:\($0)" } + ["session:1", "page:1", "user:x"]
        try await seedKeys(harness.redis, doomed + kept)
        try await harness.produce(userEvents(0..<200))

        let running = RunningWorker(try harness.makeWorker())
        #expect(try await eventually { try existingKeys(harness.redis, doomed) == 0 })
        try await running.stop()

        #expect(try existingKeys(harness.redis, kept) == kept.count)
        #expect(try await harness.committedTotal() == 200)
        #expect(try harness.deadLetterReasons().isEmpty)
    }

    @Test func poisonMessagesAreDeadLetteredAndTheGoodOnesApplied() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        try await seedKeys(harness.redis, ["user:1", "user:2", "org:acme:5"])
        try await harness.produce([
            #"{"entity":"user","id":"1","op":"update"}"#,
            #"{"entity":"user","id":"#,                                   // not JSON
            #"{"entity":"user","op":"update"}"#,                           // no id
            #"{"entity":"org","id":"5","op":"update"}"#,                   // no tenant for the template
            #"{"entity":"user","id":"2","op":"update"}"#,
            #"{"entity":"org","id":"5","op":"update","tenant":"acme"}"#,
        ])
        let running = RunningWorker(try harness.makeWorker())
        #expect(try await eventually { try existingKeys(harness.redis, ["user:1", "user:2", "org:acme:5"]) == 0 })
        #expect(try await eventually { try harness.deadLetterReasons().count == 3 })
        try await running.stop()
        #expect(try harness.deadLetterReasons() == ["invalid-json", "schema-violation", "unresolved-placeholder"])
        #expect(try await harness.committedTotal() == 6)
    }

    @Test func aRestartedWorkerSkipsNothing() async throws {
        let harness = try await WorkerHarness()
        let keys = (0..<3000).map { "user:\($0)" }
        try await seedKeys(harness.redis, keys)
        try await harness.produce(userEvents(0..<1500))

        let first = RunningWorker(try harness.makeWorker())
        _ = try await eventually { try existingKeys(harness.redis, keys) < 3000 }
        try await first.stop()
        // Keys deleted by the first worker come back, as a cache refill would:
        // the second worker must not skip what was not committed.
        try await harness.produce(userEvents(1500..<3000))
        let second = RunningWorker(try harness.makeWorker())
        #expect(try await eventually { try existingKeys(harness.redis, keys) == 0 })
        try await second.stop()
        #expect(try await harness.committedTotal() == 3000)
    }

    @Test func aDelayedRedeleteIsDoneBeforeItsOffsetIsCommitted() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        try await seedKeys(harness.redis, ["page:7"])
        try await harness.produce([#"{"entity":"page","id":"7","op":"update"}"#])
        let running = RunningWorker(try harness.makeWorker())
        #expect(try await eventually { try existingKeys(harness.redis, ["page:7"]) == 0 })
        // A reader refills the cache from a stale replica right after the first delete
        // (the shared rules redelete pages 2 s later: the refill is one command, well inside).
        try harness.redis.call("SET", "page:7", "stale")
        #expect(try await eventually { try existingKeys(harness.redis, ["page:7"]) == 0 })
        try await running.stop()
        #expect(try await harness.committedTotal() == 1)
    }

    @Test func aDeadRedisNodeDeadLettersItsOperationsAndCommitsPastThem() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        harness.redis.kill()
        try await harness.produce(userEvents(0..<3))
        let running = RunningWorker(try harness.makeWorker())
        #expect(try await eventually { try harness.deadLetterReasons().count == 3 })
        try await running.stop()
        #expect(try harness.deadLetterReasons() == ["operation-failed", "operation-failed", "operation-failed"])
        let record = try harness.deadLetterRedis.call("XRANGE", "dead-letters", "-", "+", "COUNT", "1")
        #expect(record.contains(#""node":"\#(harness.redis.endpoint)""#))
        #expect(record.contains(#""kind":"delete","key":"user:0""#))
        #expect(try await harness.committedTotal() == 3)
    }

    @Test func whileTheDeadLetterStoreIsDownNothingIsCommitted() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        harness.deadLetterRedis.kill()
        try await harness.produce([#"{"entity":"user""#])
        let running = RunningWorker(try harness.makeWorker())
        try await Task.sleep(for: .seconds(6))
        #expect(try await harness.committedTotal() == 0)
        try await harness.deadLetterRedis.restart()
        #expect(try await eventually { try harness.deadLetterReasons() == ["invalid-json"] })
        try await running.stop()
        #expect(try await harness.committedTotal() == 1)
    }
}
