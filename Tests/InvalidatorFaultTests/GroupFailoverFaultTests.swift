import Foundation
import TestSupport
import Testing

/// Two workers share one consumer group and one of them goes away: its partitions
/// must move to the survivor, and every event's keys be deleted. The time from the
/// departure until the last key of the departed worker's partitions is deleted is
/// how long those caches stayed stale.
///
/// On librdkafka 2.0's mock cluster every rebalance started in a formed group waits
/// `session.timeout.ms` − 1 s for members to (re)join, where a real broker moves on as
/// soon as every live member has rejoined. With the default 10 s session timeout:
/// a member that leaves (SIGTERM) is replaced after ~9 s; a silent one (kill -9,
/// static member) after its session expires, 10 s, plus that 9 s.
@Suite(.timeLimit(.minutes(3))) struct GroupFailoverFaultTests {
    /// How the first worker leaves the group.
    enum Departure {
        case kill
        case terminate
    }

    /// What one failover scenario measured.
    struct Failover {
        /// From the departure until every key of the events produced after it is deleted.
        var takeover: Duration
        /// How a terminated worker exited; nil when it was killed, or did not exit within a minute.
        var exit: ChildProcess.Exit?
    }

    static let partitions: Int32 = 4

    @Test func aKilledWorkersPartitionsAreTakenOverWithinThirtySeconds() async throws {
        let failover = try await runFailover(.kill)
        report("group failover, kill -9 of one of two workers", "survivor took over in \(seconds(failover.takeover)) (bound 30 s; librdkafka's defaults: ~87 s)")
        #expect(failover.takeover <= .seconds(30))
    }

    @Test func aTerminatedWorkerLeavesTheGroupSoTheSurvivorTakesOverWithoutWaitingForItsSession() async throws {
        let failover = try await runFailover(.terminate)
        report("group failover, SIGTERM of one of two workers", "survivor took over in \(seconds(failover.takeover))")
        #expect(failover.exit == .success)
        // Leaving costs the mock's rebalance hold (~9 s). A member that did not leave
        // would first have to time out (10 s more), and a survivor whose commits made
        // librdkafka rejoin (librdkafka#4059) would cost a second hold (9 s more):
        // both at least 19 s, so 17 s leaves a loaded machine room and still tells them apart.
        #expect(failover.takeover < .seconds(17))
    }

    @Test func aTerminatedStaticMemberKeepsItsPartitionsUntilItsSessionExpires() async throws {
        let failover = try await runFailover(.terminate, staticMembership: true)
        report("group failover, SIGTERM of one of two static members", "survivor took over in \(seconds(failover.takeover))")
        #expect(failover.exit == .success)
        // KIP-345: a static member does not leave on close; its partitions wait for the
        // session timeout, then the mock's rebalance hold.
        #expect(failover.takeover >= .seconds(15))
        #expect(failover.takeover <= .seconds(30))
    }

    /// Starts two workers in one group, waits until each holds partitions and both have
    /// deleted a first round of keys, makes the first depart, produces a second round
    /// over every partition and waits until all of its keys are deleted.
    func runFailover(_ departure: Departure, staticMembership: Bool = false) async throws -> Failover {
        let redis = try await RedisServer.start()
        let kafka = try FaultKafka(partitions: Self.partitions)
        let scenario = try Scenario()
        try scenario.write("rules.yaml", """
            rules:
              - { name: user, match: { entity: user }, delete: ["user:{id}"] }
            """)
        let config = try scenario.write("invalidator.yaml", """
            sources:
              kafka:
                brokers: "\(kafka.bootstrapServers)"
                topics: ["\(kafka.topic)"]
                group: failover
            \(staticMembership ? "    group_instance_id: \"${POD_NAME}\"" : "")
                properties: { fetch.wait.max.ms: "10" }
            pools:
              main: { nodes: ["\(redis.endpoint)"] }
            rules: rules.yaml
            shutdown: { drain_timeout: 5s }
            """)
        // Started together, both join within the mock's first 3 s rebalance window.
        let departing = try InvalidatorProcess(run: config, environment: ["POD_NAME": "worker-a"])
        let survivor = try InvalidatorProcess(run: config, environment: ["POD_NAME": "worker-b"])
        let logs = { "departing:\n\(departing.log.suffix(3000))\nsurvivor:\n\(survivor.log.suffix(3000))" }
        #expect(try await departing.waitUntilReady(), "\(logs())")
        #expect(try await survivor.waitUntilReady(), "\(logs())")

        // Each holds partitions of its own, so the departing one leaves some behind.
        let formed = try await eventually(timeout: .seconds(60)) {
            let (mine, theirs) = (try ownedPartitions(departing), try ownedPartitions(survivor))
            return !mine.isEmpty && !theirs.isEmpty && mine.isDisjoint(with: theirs)
                && mine.union(theirs).count == Int(Self.partitions)
        }
        try #require(formed, "the group never settled on two members: \(logs())")

        let before = (0..<40).map { "user:\($0)" }
        try await redis.seed(before)
        try await kafka.produce(events("user", 0..<40))
        try #require(try await eventually { try existingKeys(redis, before) == 0 }, "\(logs())")

        let after = (40..<80).map { "user:\($0)" }
        try await redis.seed(after)
        let departed = ContinuousClock.now
        var exit: ChildProcess.Exit?
        switch departure {
        case .kill:
            departing.kill()
        case .terminate:
            exit = departing.terminate()
        }
        try await kafka.produce(events("user", 40..<80))
        let deleted = try await eventually(timeout: .seconds(90)) { try existingKeys(redis, after) == 0 }
        let takeover = ContinuousClock.now - departed
        let left = try existingKeys(redis, after)
        try #require(deleted, "\(left) keys left after \(seconds(takeover)): \(logs())")
        #expect(survivor.isRunning, "\(logs())")
        return Failover(takeover: takeover, exit: exit)
    }

    /// The partitions a worker reports a consumer lag for: those assigned to it and fetched.
    func ownedPartitions(_ worker: InvalidatorProcess) throws -> Set<Int32> {
        Set(try (0..<Self.partitions).filter { try worker.metric("invalidator_consumer_lag", ["partition": "\($0)"]) != nil })
    }

    func seconds(_ duration: Duration) -> String {
        String(format: "%.1f s", Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18)
    }
}
