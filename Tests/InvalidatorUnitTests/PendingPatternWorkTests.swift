import InvalidatorCore
@testable import InvalidatorRuntime
import Testing

/// The ordering rule of the pattern stage: which later events may overtake pending
/// pattern work, and the bound on pending patterns.
@Suite struct PendingPatternWorkTests {
    private static func footprint(_ pools: [String: [CacheOperation]]) -> PendingPatternWork.Footprint {
        let plan = Plan(
            event: ChangeEvent(entity: "e", ids: ["1"], op: .update), matchedRules: ["r"],
            pools: pools.sorted { $0.key < $1.key }.map { PoolPlan(pool: $0.key, operations: $0.value.map { PlannedOperation($0, rule: "r") }) },
            rejection: nil)
        return PendingPatternWork.Footprint(plan)
    }

    @Test func patternEventsAlwaysQueueAndRemovalsOvertakeThem() {
        var pending = PendingPatternWork()
        let pattern = Self.footprint(["a": [.deletePattern(pattern: "user:*"), .delete(key: "x")]])
        #expect(pending.mustQueue(pattern), "a pattern event goes to the stage even with nothing pending")
        pending.add(pattern)
        #expect(!pending.mustQueue(Self.footprint(["a": [.delete(key: "user:1"), .purgeTag(setKey: "tag:t"), .expire(key: "user:2", ttlMilliseconds: 5)]])),
                "deletes, tags and expires commute with pending removals")
        #expect(!pending.mustQueue(Self.footprint(["a": [.precompute(PrecomputeJob(stream: "jobs", job: "user", args: [], eventID: nil, occurredAt: nil))]])))
        #expect(pending.mustQueue(Self.footprint(["a": [.bump(key: "user:version")]])), "an INCR must not overtake a removal of its key")
        #expect(!pending.mustQueue(Self.footprint(["b": [.bump(key: "user:version")]])), "another pool is another keyspace")
    }

    @Test func anythingOnAPoolWaitsBehindAQueuedBump() {
        var pending = PendingPatternWork()
        let bump = Self.footprint(["a": [.bump(key: "v")]])
        pending.add(Self.footprint(["a": [.deletePattern(pattern: "v*")]]))
        pending.add(bump)
        #expect(pending.mustQueue(Self.footprint(["a": [.delete(key: "v")]])), "a delete must not overtake the queued INCR")
        #expect(!pending.mustQueue(Self.footprint(["b": [.delete(key: "v")]])))
        pending.remove(bump)
        #expect(!pending.mustQueue(Self.footprint(["a": [.delete(key: "v")]])), "once the INCR ran, deletes overtake again")
    }

    @Test func boundsPendingPatternsButAdmitsAnOversizedEventAlone() {
        var pending = PendingPatternWork()
        let limits = ["a": 3]
        let two = Self.footprint(["a": [.deletePattern(pattern: "x*"), .deletePattern(pattern: "y*")]])
        let five = Self.footprint(["a": (0..<5).map { .deletePattern(pattern: "p\($0)*") }])
        #expect(pending.hasRoom(for: five, limits: limits), "larger than the bound, but nothing is pending: no deadlock")
        pending.add(two)
        #expect(!pending.hasRoom(for: two, limits: limits))
        #expect(!pending.hasRoom(for: five, limits: limits))
        #expect(pending.hasRoom(for: Self.footprint(["a": [.deletePattern(pattern: "z*")]]), limits: limits))
        #expect(pending.hasRoom(for: Self.footprint(["a": [.delete(key: "k")]]), limits: limits), "no patterns, no bound")
        #expect(pending.pools["a"]?.patterns == 2)
        pending.remove(two)
        #expect(pending.pools.isEmpty)
    }
}
