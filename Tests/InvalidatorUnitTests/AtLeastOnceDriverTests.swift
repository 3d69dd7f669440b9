import Foundation
import InvalidatorCore
@testable import InvalidatorRuntime
import Logging
import ServiceLifecycleTestKit
import Synchronization
import TestDoubles
import Testing

/// The driver's commit-safety rules, against a scripted adapter and no server: the
/// one pool points at a closed port, so every cache operation fails at once and is
/// dead-lettered into a store the test controls.
@Suite(.timeLimit(.minutes(1))) struct AtLeastOnceDriverTests {
    /// A source that plays a script of inputs, then reports `.idle` until stopped,
    /// and records every commit and every revocation's completion.
    final class ScriptedAdapter: SourceAdapter {
        typealias Partition = String
        struct State {
            var script: [SourceInput<String>]
            var commits: [[String: Int64]] = []
            /// The commits made before each revocation was completed.
            var commitsAtRevocation: [[[String: Int64]]] = []
        }

        let loopName = "scripted"
        let state: Mutex<State>
        let stop = StopSignal()

        init(_ script: [SourceInput<String>]) {
            state = Mutex(State(script: script))
        }

        var commits: [[String: Int64]] { state.withLock { $0.commits } }

        /// The position committed last for `partition`.
        func committed(_ partition: String) -> Int64? {
            commits.last { $0[partition] != nil }?[partition]
        }

        func next(timeout: Duration) async throws -> SourceInput<String> {
            if let input = state.withLock({ $0.script.isEmpty ? nil : $0.script.removeFirst() }) {
                guard case .revoked(let partitions, let isLost, let complete) = input else { return input }
                return .revoked(partitions: partitions, isLost: isLost) { [self] in
                    state.withLock { $0.commitsAtRevocation.append($0.commits) }
                    complete()
                }
            }
            await stop.pause(for: timeout)
            return .idle
        }

        func interrupt() { stop.set() }

        func commit(_ positions: [String: Int64]) async throws {
            state.withLock { $0.commits.append(positions) }
        }
    }

    /// A pipeline whose one pool is unreachable and whose dead letters go to `store`.
    static func pipeline(store: any DeadLetterStore, rules: String) throws -> EventPipeline {
        let configuration = try ConfigurationLoader.load(
            yaml: """
                pools:
                  primary: { nodes: ["127.0.0.1:1"], connect_timeout: 100ms }
                retry: { attempts: 1 }
                sources:
                  redis_pubsub: { pool: primary, channels: [c] }
                rules: rules.yaml
                """,
            file: "invalidator.yaml", environment: [:], readSecretFile: { (path) throws(FileReadError) in throw FileReadError(path: path, reason: "none") })
        let ruleSet = try RulesLoader.load(yaml: rules, file: "rules.yaml")
        return EventPipeline(
            rules: RulesState(Planner(rules: ruleSet, pools: configuration.poolTargets)),
            pools: PoolSet(configuration: configuration, logger: Logger(label: "test")), deadLetters: store,
            workerID: "test", logger: Logger(label: "test"))
    }

    static let userRules = """
        rules:
          - { name: user, match: { entity: user }, delete: ["user:{id}"] }
          - { name: slow, match: { entity: slow }, delete: ["slow:{id}"], redelete_after: 2s }
        """

    /// Events of `partition` at `offsets`, each `{"entity": entity, ...}`.
    static func batch(_ partition: String, _ offsets: Range<Int64>, entity: (Int64) -> String = { _ in "user" }) -> SourceInput<String> {
        let events = offsets.map { offset in
            IncomingEvent(source: .manual, payload: Array(#"{"entity":"\#(entity(offset))","id":"\#(offset)","op":"update"}"#.utf8))
        }
        return .batch(SourceBatch(events: events, offsets: Array(offsets), partition: { _ in partition }))
    }

    func driver(_ adapter: ScriptedAdapter, _ pipeline: EventPipeline) -> AtLeastOnceDriver<ScriptedAdapter> {
        AtLeastOnceDriver(
            adapter: adapter, pipeline: pipeline, liveness: LivenessMonitor(), drainTimeout: .seconds(5),
            commitInterval: .milliseconds(20), logger: Logger(label: "test"))
    }

    @Test func onlyTheFinishedPrefixIsCommitted() async throws {
        let store = ControlledDeadLetterStore()
        // Offset 0 waits for its delayed redelete; 1 to 9 finish at once.
        let adapter = ScriptedAdapter([Self.batch("p", 0..<10) { $0 == 0 ? "slow" : "user" }])
        let driver = driver(adapter, try Self.pipeline(store: store, rules: Self.userRules))
        let running = Task { try await driver.run() }
        #expect(await eventually { store.stored >= 10 }, "every operation failed and was dead-lettered")
        #expect(adapter.committed("p") == nil, "nothing passes the unfinished offset 0")
        #expect(await eventually { adapter.committed("p") == 10 }, "once its redelete ran, the whole prefix commits")
        running.cancel()
        try await running.value
        #expect(adapter.commits.allSatisfy { ($0["p"] ?? 10) == 10 }, "no position short of the finished prefix was ever committed")
    }

    @Test func aBatchThatIsNotDurableIsNeverCommitted() async throws {
        let store = ControlledDeadLetterStore()
        store.mode = .fails
        let adapter = ScriptedAdapter([Self.batch("p", 0..<3), Self.batch("q", 0..<2)])
        let driver = driver(adapter, try Self.pipeline(store: store, rules: Self.userRules))
        let running = Task { try await driver.run() }
        #expect(await eventually { store.attempts >= 3 }, "the store is retried while down")
        running.cancel()
        try await running.value
        #expect(adapter.committed("p") == nil)
        #expect(adapter.committed("q") == nil)
        #expect(store.stored == 0)
    }

    @Test func aRevokedPartitionIsCommittedBeforeItIsHandedBack() async throws {
        let store = ControlledDeadLetterStore()
        let revoked = Mutex(false)
        let adapter = ScriptedAdapter([
            Self.batch("a", 0..<5) { $0 == 4 ? "slow" : "user" }, Self.batch("b", 0..<3),
            .revoked(partitions: ["a"], isLost: false) { revoked.withLock { $0 = true } },
            Self.batch("b", 3..<6),
        ])
        let driver = driver(adapter, try Self.pipeline(store: store, rules: Self.userRules))
        let running = Task { try await driver.run() }
        #expect(await eventually { revoked.withLock { $0 } })
        let before = try #require(adapter.state.withLock { $0.commitsAtRevocation.first })
        #expect(before.last { $0["a"] != nil }?["a"] == 5, "a's work, its redelete included, was finished and committed first")
        #expect(await eventually { adapter.committed("b") == 6 }, "other partitions go on")
        running.cancel()
        try await running.value
        #expect(driver.inFlight == 0)
    }

    @Test func aLostPartitionIsNotCommitted() async throws {
        let store = ControlledDeadLetterStore()
        let adapter = ScriptedAdapter([
            Self.batch("a", 0..<3) { $0 == 0 ? "slow" : "user" },
            .revoked(partitions: ["a"], isLost: true) {},
        ])
        let driver = driver(adapter, try Self.pipeline(store: store, rules: Self.userRules))
        let running = Task { try await driver.run() }
        #expect(await eventually { adapter.state.withLock { !$0.commitsAtRevocation.isEmpty } })
        // Past the redelete: the work is done, and still not committed.
        try await Task.sleep(for: .milliseconds(2300))
        running.cancel()
        try await running.value
        #expect(adapter.committed("a") == nil, "another member may own it already")
    }

    @Test func stopDrainsPendingRedeletesThenCommits() async throws {
        let store = ControlledDeadLetterStore()
        let adapter = ScriptedAdapter([Self.batch("p", 0..<2) { _ in "slow" }])
        let driver = driver(adapter, try Self.pipeline(store: store, rules: Self.userRules))
        try await testGracefulShutdown { shutdown in
            async let running: Void = driver.run()
            #expect(await eventually { store.stored >= 2 }, "the first deletes failed and were dead-lettered")
            #expect(adapter.committed("p") == nil)
            shutdown.triggerGracefulShutdown()
            try await running
        }
        #expect(adapter.committed("p") == 2, "the redeletes ran during the drain and their events were committed")
        #expect(store.stored == 4)
    }
}
