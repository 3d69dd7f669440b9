import Foundation
import InvalidatorRuntime
import TestDoubles
import TestSupport
import Testing

/// Pattern events are applied in the background, through the real worker: later
/// events are not held up by a long walk, those whose outcome depends on order stay
/// behind it, pending patterns are bounded, and commits wait for the walk.
///
/// Every reply of the cache node comes late (a proxy) and SCAN reads few keys per
/// call, so a walk takes seconds however fast the machine: the tests look at what
/// happened while it ran, not at how long anything took.
@Suite(.timeLimit(.minutes(3))) struct PatternStageTests {
    static let rules = """
        rules:
          - name: user
            match: { entity: user }
            delete: ["user:{id}"]
          - name: sessions
            match: { entity: session }
            patterns: ["session:{id}:*"]
          - name: session-version
            match: { entity: session_version }
            bump: ["session:{id}:version"]
        """

    /// Keys no rule touches: the keyspace a walk goes through, 600 SCAN pages of at least
    /// 10 ms each: long enough for a test to produce events and stop a worker while it runs.
    static let filler = (0..<30_000).map { "filler:\($0)" }

    static func harness(
        partitions: Int32 = 1, settings: String = "", drainTimeout: String = "5s"
    ) async throws -> WorkerHarness {
        try await WorkerHarness(
            partitions: partitions, rules: rules, primarySettings: ", scan_count: 50" + settings, replyDelay: .milliseconds(10),
            drainTimeout: drainTimeout)
    }

    static func sessionKeys(_ ids: some Sequence<Int>, each: Int = 20) -> [String] {
        ids.flatMap { id in (0..<each).map { "session:\(id):\($0)" } }
    }

    static func sessionEvent(_ ids: [Int]) -> String {
        #"{"entity":"session","ids":[\#(ids.map { "\"\($0)\"" }.joined(separator: ","))],"op":"update"}"#
    }

    static func userEvents(_ ids: Range<Int>) -> [String] {
        ids.map { #"{"entity":"user","id":"\#($0)","op":"update"}"# }
    }

    /// Waits until the walk has begun: some of `keys` are gone, not necessarily all.
    static func walkStarted(_ harness: WorkerHarness, _ keys: [String]) async throws {
        try #require(try await eventually { try existingKeys(harness.redis, keys) < keys.count })
    }

    @Test func plainDeletesGoOutWhileABulkPatternEventWalks() async throws {
        let harness = try await Self.harness()
        let bulk = Self.sessionKeys(0..<8)
        let users = (0..<20).map { "user:\($0)" }
        try await seedKeys(harness.redis, bulk + users + Self.filler)
        try await harness.produce([Self.sessionEvent(Array(0..<8))])
        let running = RunningWorker(try harness.makeWorker())
        try await Self.walkStarted(harness, bulk)

        try await harness.produce(Self.userEvents(0..<20))
        try #require(try await eventually { try existingKeys(harness.redis, users) == 0 })
        let committedMeanwhile = try await harness.committedTotal()
        let bulkLeft = try existingKeys(harness.redis, bulk)
        #expect(bulkLeft > 0, "the later deletes were done while the bulk event's walk still ran")
        #expect(committedMeanwhile == 0, "nothing is committed past the unfinished bulk event")

        #expect(try await eventually(timeout: .seconds(90)) { try existingKeys(harness.redis, bulk) == 0 })
        #expect(try await eventually { try await harness.committedTotal() == 21 })
        #expect(try existingKeys(harness.redis, Self.filler) == Self.filler.count, "keys no pattern matches are kept")
        try await running.stop()
        #expect(try harness.deadLetterReasons().isEmpty)
    }

    @Test func aBumpAndTheDeletesAfterItStayBehindAPendingPattern() async throws {
        let harness = try await Self.harness()
        let sessions = Self.sessionKeys(1..<2, each: 200)
        try await seedKeys(harness.redis, sessions + ["user:1"] + Self.filler)
        _ = try harness.redis.call("SET", "session:1:version", "41")
        try await harness.produce([Self.sessionEvent([1])])
        let running = RunningWorker(try harness.makeWorker())
        try await Self.walkStarted(harness, sessions)

        // In order: the walk removes the version key, then the bump makes it 1 and the
        // delete removes user:1. Had the bump overtaken the walk, the key would be gone.
        try await harness.produce([#"{"entity":"session_version","id":"1","op":"update"}"#] + Self.userEvents(1..<2))
        #expect(try existingKeys(harness.redis, sessions) > 0, "the bump came while the walk ran")
        #expect(try await eventually(timeout: .seconds(120)) { try await harness.committedTotal() == 3 })
        #expect(try harness.redis.call("GET", "session:1:version") == "1")
        #expect(try existingKeys(harness.redis, sessions + ["user:1"]) == 0)
        try await running.stop()
    }

    @Test func pendingPatternsStayWithinTheBoundAndAnOversizedEventStillRuns() async throws {
        let harness = try await Self.harness(settings: ", max_pending_patterns: 2")
        let metrics = AllValuesMetrics()
        let keys = Self.sessionKeys(0..<16, each: 5)
        try await seedKeys(harness.redis, Array(keys) + Array(Self.filler.prefix(2000)))
        // Twelve one-pattern events, then one with four patterns: more than the bound.
        try await harness.produce((0..<12).map { Self.sessionEvent([$0]) } + [Self.sessionEvent(Array(12..<16))])
        // A loop waiting for room beats while the stage walks: never a stall, though the walks take seconds.
        let observability = WorkerObservability(metrics: WorkerMetrics(factory: metrics), stallTimeout: .seconds(10))
        let running = RunningWorker(try harness.makeWorker(observability: observability))

        var stalls: [String] = []
        #expect(try await eventually(timeout: .seconds(90)) {
            stalls += running.worker.liveness.loops.filter(\.isStalled).map(\.description)
            return try await harness.committedTotal() == 13
        })
        #expect(stalls.isEmpty, "\(stalls)")
        #expect(try existingKeys(harness.redis, keys) == 0)
        try await running.stop()
        let pending = metrics.recordedValues("invalidator_patterns_pending", ["pool": "primary"])
        #expect(pending.contains(2), "the stage held as many as the bound: \(pending)")
        #expect(pending.allSatisfy { $0 <= 2 || $0 == 4 }, "over the bound only the oversized event, alone: \(pending)")
        #expect(pending.contains(4))
        #expect(pending.last == 0)
        #expect(try harness.deadLetterReasons().isEmpty)
    }

    @Test func gracefulStopDrainsPatternWork() async throws {
        // A drain timeout no loaded machine's walk reaches: the stop waits for the walk.
        let harness = try await Self.harness(drainTimeout: "60s")
        let sessions = Self.sessionKeys(3..<4, each: 100)
        try await seedKeys(harness.redis, sessions + Self.filler)
        try await harness.produce([Self.sessionEvent([3])])
        let running = RunningWorker(try harness.makeWorker())
        try await Self.walkStarted(harness, sessions)
        try await running.stop()
        #expect(try existingKeys(harness.redis, sessions) == 0, "the stop waited for the walk")
        #expect(try await harness.committedTotal() == 1)
    }

    /// Two single-id pattern events: the first's walk starts, the second is read while it
    /// runs, then the worker stops with a 100 ms drain timeout. Returns both events' keys.
    static func stopDuringAWalkWithASecondEventRead(
        _ harness: WorkerHarness
    ) async throws -> (first: [String], second: [String]) {
        let first = Self.sessionKeys(3..<4, each: 100)
        let second = Self.sessionKeys(4..<5, each: 100)
        try await seedKeys(harness.redis, first + second + Self.filler)
        try await harness.produce([Self.sessionEvent([3])])
        let stopped = RunningWorker(try harness.makeWorker())
        try await Self.walkStarted(harness, first)
        try await harness.produce([Self.sessionEvent([4])])
        try await Task.sleep(for: .milliseconds(500))
        try await stopped.stop()
        return (first, second)
    }

    /// A new worker redelivers and applies both events.
    static func restartAppliesBoth(_ harness: WorkerHarness, _ keys: [String]) async throws {
        let restarted = RunningWorker(try harness.makeWorker())
        #expect(try await eventually(timeout: .seconds(120)) { try await harness.committedTotal() == 2 })
        #expect(try existingKeys(harness.redis, keys) == 0, "redelivered and applied")
        try await restarted.stop()
    }

    @Test func pastTheDrainTimeoutPatternWorkIsGivenUpAndLeftUncommitted() async throws {
        let harness = try await Self.harness(drainTimeout: "100ms")
        // The second event waits in the stage behind the first walk.
        let (first, second) = try await Self.stopDuringAWalkWithASecondEventRead(harness)
        // The walk under way is given up between rounds; the one queued never starts.
        #expect(try await harness.committedTotal() == 0, "neither event is committed")
        #expect(try existingKeys(harness.redis, first) > 0, "the walk under way stopped before its end")
        #expect(try existingKeys(harness.redis, second) == second.count, "the queued walk did not start")
        #expect(try harness.deadLetterReasons().isEmpty, "a walk given up is redone, not dead-lettered")
        try await Self.restartAppliesBoth(harness, first + second)
    }

    @Test func aStopWhileWaitingForRoomLeavesBothEventsForRedelivery() async throws {
        let harness = try await Self.harness(settings: ", max_pending_patterns: 1", drainTimeout: "100ms")
        // The second pattern event finds the pool at its bound: the loop waits for room.
        let (first, second) = try await Self.stopDuringAWalkWithASecondEventRead(harness)
        // The loop stops waiting for room at the stop; the walk is given up after the drain timeout.
        #expect(try existingKeys(harness.redis, first) > 0, "the stop did not wait for the walk")
        #expect(try await harness.committedTotal() == 0)
        try await Self.restartAppliesBoth(harness, first + second)
    }

    @Test func aNodeLostDuringTheWalkDeadLettersThePatternEvent() async throws {
        let harness = try await Self.harness()
        let sessions = Self.sessionKeys(5..<6, each: 100)
        try await seedKeys(harness.redis, sessions + Self.filler)
        try await harness.produce([Self.sessionEvent([5])])
        let running = RunningWorker(try harness.makeWorker())
        try await Self.walkStarted(harness, sessions)
        harness.redis.kill()
        #expect(try await eventually(timeout: .seconds(60)) { try harness.deadLetterReasons() == ["operation-failed"] })
        #expect(try await eventually { try await harness.committedTotal() == 1 }, "a dead-lettered event is finished")
        try await running.stop()
    }
}
