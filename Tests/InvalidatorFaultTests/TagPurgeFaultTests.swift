import Foundation
import TestSupport
import Testing

/// A tag purge interrupted between its snapshot and its deletes (the worker killed,
/// or a member's node not answering) loses no member: the snapshot stays under its
/// fixed name, and the next purge of the tag (the redelivered event) or `replay`
/// deletes every member.
@Suite(.timeLimit(.minutes(3))) struct TagPurgeFaultTests {
    @Test func aWorkerKilledMidPurgeLeavesNoMemberOnceRestarted() async throws {
        let fixture = try await TagPurgeFixture()
        // Long command timeout: the worker is still waiting on the paused node when it is killed.
        let config = try fixture.writeConfig(commandTimeout: "10s")
        try fixture.stuck.call("CLIENT", "PAUSE", "120000", "WRITE")
        let worker = try InvalidatorProcess(run: config, environment: ["POD_NAME": "worker-0"])
        try fixture.publish()

        try #require(try await eventually(timeout: .seconds(30)) { try fixture.isSnapshotted() }, "\(worker.log)")
        worker.kill()
        try fixture.stuck.call("CLIENT", "UNPAUSE")
        let left = try fixture.remainingMembers()
        try #require(left > 0, "the purge was interrupted before its deletes")
        #expect(try fixture.holder.call("EXISTS", fixture.snapshotKey) == "1", "the snapshot outlives the worker")

        // Same pod name: the restarted worker takes up the entry it had not acknowledged.
        let restarted = try InvalidatorProcess(run: config, environment: ["POD_NAME": "worker-0"])
        let elapsed = try await timeUntil(timeout: .seconds(60)) { try fixture.isPurged() }

        #expect(elapsed != nil, "\(String(describing: try? fixture.remainingMembers())) members left; \(restarted.log)")
        #expect(try fixture.deadLetters() == 0)
        #expect(restarted.terminate() == .success)
        report(
            "tag purge, worker killed (kill -9) between snapshot and deletes",
            "\(left) of \(fixture.memberCount) members left; the restarted worker deleted them all in \(milliseconds(elapsed))")
    }

    @Test func aPurgeFailingOnAStuckNodeIsFinishedByReplay() async throws {
        let fixture = try await TagPurgeFixture()
        let config = try fixture.writeConfig(commandTimeout: "300ms")
        try fixture.stuck.call("CLIENT", "PAUSE", "120000", "WRITE")
        let worker = try InvalidatorProcess(run: config)
        try fixture.publish()

        let failedAfter = try await timeUntil(timeout: .seconds(60)) { try fixture.deadLetters() == 1 }
        try #require(failedAfter != nil, "\(worker.log)")
        let left = try fixture.remainingMembers()
        try #require(left > 0)
        #expect(try fixture.holder.call("EXISTS", fixture.snapshotKey) == "1", "the members not deleted are still in the snapshot")
        try fixture.stuck.call("CLIENT", "UNPAUSE")

        let started = ContinuousClock.now
        let (exit, output) = try runInvalidator(["replay", "--config", config])
        let replayTook = ContinuousClock.now - started

        #expect(exit == .success, "\(output)")
        #expect(try fixture.isPurged(), "\(String(describing: try? fixture.remainingMembers())) members left")
        #expect(try fixture.deadLetters() == 0)
        #expect(worker.terminate() == .success)
        report(
            "tag purge, a member node paused (writes) during the purge",
            "dead-lettered after \(milliseconds(failedAfter)) with \(left) of \(fixture.memberCount) members left; replay deleted them all in \(milliseconds(replayTook))")
    }
}

private func milliseconds(_ duration: Duration?) -> String {
    duration.map { "\(Int(($0 / .milliseconds(1)).rounded())) ms" } ?? "never"
}

/// A three-primary cluster holding a tag set whose members live on every primary,
/// an events server (stream source and dead letters), and the worker's config.
final class TagPurgeFixture: Sendable {
    let cluster: RedisCluster
    let events: RedisServer
    let scenario: Scenario
    let setKey = "tag:cart-group:1"
    /// The purge's snapshot of `setKey`, as the worker names it.
    let snapshotKey = "{tag:cart-group:1}:purging"
    /// The primary holding the tag set.
    let holder: RedisServer
    /// A primary holding members but not the set: the one made to stop answering.
    let stuck: RedisServer
    /// Members by the primary holding them.
    let members: [(owner: RedisServer, keys: [String])]

    var memberCount: Int { members.reduce(0) { $0 + $1.keys.count } }

    init() async throws {
        let cluster = try await RedisCluster.start(primaries: 3)
        let holder = try cluster.server(owning: setKey)
        // One hash tag per primary: its members all live there.
        var members: [(owner: RedisServer, keys: [String])] = []
        var candidate = 0
        while members.count < cluster.servers.count {
            let tag = "{shard-\(candidate)}"
            let owner = try cluster.server(owning: tag)
            if !members.contains(where: { $0.owner === owner }) {
                members.append((owner, (0..<1_700).map { "\(tag):cart:\($0)" }))
            }
            candidate += 1
        }
        for (owner, keys) in members {
            try await owner.pipe(keys.map { ["SET", $0, "v"] })
        }
        try await holder.pipe([["SADD", setKey] + members.flatMap(\.keys)])
        self.cluster = cluster
        self.holder = holder
        self.members = members
        // Three primaries, each holding members: two of them are not the holder.
        stuck = members.first { $0.owner !== holder }!.owner
        events = try await RedisServer.start()
        scenario = try Scenario()
        try scenario.write("rules.yaml", """
            rules:
              - { name: carts, match: { entity: cart-group }, pools: [cache], tags: ["cart-group:{id}"] }
            """)
    }

    func writeConfig(commandTimeout: String) throws -> String {
        let nodes = cluster.endpoints.map { "\"\($0)\"" }.joined(separator: ", ")
        return try scenario.write("invalidator.yaml", """
            pools:
              cache: { mode: cluster, nodes: [\(nodes)], command_timeout: \(commandTimeout) }
              events: { nodes: ["\(events.endpoint)"] }
            rules: rules.yaml
            retry: { attempts: 2, initial_backoff: 10ms, max_backoff: 50ms }
            dead_letters: { pool: events, stream: "invalidator:dead-letters" }
            sources: { redis_stream: { pool: events, streams: [entity-changes] } }
            """)
    }

    func publish() throws {
        try events.call("XADD", "entity-changes", "*", "event", #"{"entity":"cart-group","id":"1","op":"update"}"#)
    }

    /// The set has been moved into the snapshot.
    func isSnapshotted() throws -> Bool {
        try holder.call("EXISTS", setKey) == "0" && holder.call("EXISTS", snapshotKey) == "1"
    }

    func remainingMembers() throws -> Int {
        try members.reduce(0) { $0 + (try existingKeys($1.owner, $1.keys)) }
    }

    /// Every member deleted, and no set or snapshot left.
    func isPurged() throws -> Bool {
        try remainingMembers() == 0 && holder.call("EXISTS", setKey, snapshotKey) == "0"
    }

    func deadLetters() throws -> Int {
        Int(try events.call("XLEN", "invalidator:dead-letters")) ?? -1
    }
}
