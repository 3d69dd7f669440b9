import InvalidatorCore
@testable import InvalidatorRuntime
import Synchronization
import TestDoubles
import Testing

/// The delayed-redelete queue, against a pool at a closed port: every redelete
/// fails at once and comes back to its event as a node failure naming its key.
@Suite(.timeLimit(.minutes(1))) struct RedeleteSchedulerTests {
    let executor: BatchExecutor

    init() throws {
        executor = try AtLeastOnceDriverTests.pipeline(store: ControlledDeadLetterStore(), rules: AtLeastOnceDriverTests.userRules).executor
    }

    func group(_ key: String, after: Duration) -> [(pool: String, redelete: Redelete)] {
        [("primary", Redelete(after: after, keys: [key], rule: "slow"))]
    }

    /// Keys whose event finished, in order.
    final class Finished: Sendable {
        private let keys = Mutex<[String]>([])
        var all: [String] { keys.withLock { $0 } }

        func record(_ failures: [NodeFailure]) {
            let failed = failures.flatMap { $0.operations.compactMap(\.operation.routingKey) }
            keys.withLock { $0 += failed }
        }
    }

    @Test func redeletesOfDifferentDelaysRunInTheOrderTheyFallDue() async throws {
        let scheduler = RedeleteScheduler(executor: executor)
        let running = Task { await scheduler.run() }
        let finished = Finished()
        // Delays far apart: scheduling the four takes no time next to them on any machine.
        for (key, delay) in [("a", 3000), ("b", 100), ("c", 1500), ("d", 100)] {
            await scheduler.schedule(group(key, after: .milliseconds(delay)), heartbeat: nil) { finished.record($0) }
        }
        #expect(await scheduler.drain(until: ContinuousClock.now + .seconds(10)))
        #expect(finished.all == ["b", "d", "c", "a"])
        running.cancel()
        await running.value
    }

    /// At the bound, scheduling waits until a pending event's redeletes ran, and the
    /// waiting loop's heartbeat says so.
    @Test func schedulingWaitsWhileTooManyEventsArePending() async throws {
        let scheduler = RedeleteScheduler(executor: executor, maxPendingEvents: 2)
        let running = Task { await scheduler.run() }
        let finished = Finished()
        for key in ["a", "b"] {
            await scheduler.schedule(group(key, after: .seconds(3)), heartbeat: nil) { finished.record($0) }
        }
        let heartbeat = Heartbeat(name: "source")
        let third = Task {
            await scheduler.schedule(group("c", after: .milliseconds(10)), heartbeat: heartbeat) { finished.record($0) }
            return finished.all
        }
        #expect(await eventually { heartbeat.lastBeat.activity == .waitingForRedeletes })
        #expect(heartbeat.lastBeat.detail == "2 events pending, bound 2")
        #expect(finished.all.isEmpty)
        #expect(await third.value.count >= 1, "the third event was scheduled only once an earlier one had finished")
        #expect(await scheduler.drain(until: ContinuousClock.now + .seconds(10)))
        #expect(Set(finished.all) == ["a", "b", "c"])
        running.cancel()
        await running.value
    }
}
