import InvalidatorCore
import Synchronization
import TestSupport
import Testing

@testable import InvalidatorRedis

/// A tag purge must never lose a member: not when a step's reply is lost and the
/// step retried, not when a purge dies half-way, not when a member's node is down,
/// not when two purges of one tag overlap.
@Suite struct TagPurgeTests {
    @Test func aRetriedSnapshotStepMergesWithTheSnapshotItsLostTryTook() async throws {
        let server = try await RedisServer.start()
        let proxy = try TCPProxy(to: server.port)
        let members = (0..<200).map { "item:\($0)" }
        try await server.seed(members)
        try server.call(["SADD", "tag:list"] + members)
        let pool = try makePool(.single, [proxy.endpoint], commandTimeout: .milliseconds(500))

        // The first try of the snapshot step runs, but its reply is lost: the purge times out and tries again.
        proxy.dropReplies(true)
        let purge = Task { await pool.execute([.purgeTag(setKey: "tag:list")]) }
        try #require(try await eventually { try server.call("EXISTS", "tag:list") == "0" })
        // Meanwhile the application tags a new entry.
        try server.call("SET", "item:late", "v")
        try server.call("SADD", "tag:list", "item:late")
        proxy.dropReplies(false)
        let report = await purge.value

        #expect(report.isSuccess, "\(report.failures)")
        #expect(proxy.connectionsAccepted >= 2, "the snapshot step was retried on a new connection")
        #expect(try server.existing(members + ["item:late"]).isEmpty)
        #expect(try server.keys().isEmpty)
    }

    @Test func aSnapshotLeftByACrashedPurgeIsPurgedByTheNextOne() async throws {
        let cluster = try await RedisCluster.start(primaries: 3)
        func set(_ key: String) throws { try cluster.server(owning: key).call("SET", key, "v") }
        func add(_ key: String, _ members: [String]) throws { try cluster.server(owning: key).call(["SADD", key] + members) }
        // A crashed purge leaves the snapshot and its owner token; the application keeps
        // tagging into a new live set, smaller or larger than the snapshot (or not at all).
        let leftovers: [(set: String, old: Int, new: Int)] = [("tag:crashed", 40, 10), ("tag:{tenant-9}:crashed", 5, 60), ("tag:quiet", 40, 0)]
        let setKeys = leftovers.map(\.set)
        var members: [String] = []
        for (setKey, old, new) in leftovers {
            let keys = Commands.tagPurgeKeys(forTagSet: setKey)
            let snapshotted = (0..<old).map { "\(setKey):old:\($0)" }
            try add(keys.snapshot, snapshotted)
            try cluster.server(owning: keys.owner).call("SET", keys.owner, "purge-that-crashed:1.2")
            let added = (0..<new).map { "\(setKey):new:\($0)" }
            if !added.isEmpty { try add(setKey, added) }
            members += snapshotted + added
        }
        for member in members { try set(member) }
        let pool = try makePool(.cluster, cluster.endpoints)

        let report = await pool.execute(setKeys.map { .purgeTag(setKey: $0) })

        #expect(report.isSuccess, "\(report.failures)")
        for server in cluster.servers {
            #expect(try server.keys().isEmpty)
        }
    }

    @Test func aMemberWhoseShardIsDownIsRecordedWhereItsSetLivesAndReplayedThere() async throws {
        // Append-only, fsynced: a node killed and restarted still has its keys.
        let servers = try await RedisServer.start(count: 3, ["--appendonly", "yes", "--appendfsync", "always"])
        let nodes = servers.map { endpoint($0.endpoint) }
        let ring = KetamaRing(servers: nodes)
        func server(_ node: RedisEndpoint) -> RedisServer { servers[nodes.firstIndex(of: node)!] }
        let setKey = "tag:carts"
        let holder = ring.server(for: setKey)
        let members = (0..<90).map { "cart:\($0 * 7919)" }
        for member in members { try server(ring.server(for: member)).call("SET", member, "v") }
        try server(holder).call(["SADD", setKey] + members)
        let down = try #require(nodes.first { node in node != holder && members.contains { ring.server(for: $0) == node } })
        let membersOnDown = members.filter { ring.server(for: $0) == down }
        let pool = try makePool(.sharded, servers.map(\.endpoint), commandTimeout: .milliseconds(500))

        server(down).kill()
        let report = await pool.execute([.purgeTag(setKey: setKey)])

        // The tag runs on every node of a sharded pool: the down node fails its own
        // snapshot step, and the holder fails the members it could not unlink there.
        #expect(Set(report.failures.map(\.node)) == [holder, down])
        for failure in report.failures {
            #expect(failure.operation == .purgeTag(setKey: setKey))
            #expect(failure.error.isConnectionFailure || failure.error.code == .circuitOpen, "\(failure.error)")
        }
        try await server(down).restart()
        #expect(try server(down).existing(membersOnDown) == membersOnDown)
        for node in nodes where node != down {
            #expect(try server(node).existing(members).isEmpty)
        }

        // Replay: a new process runs each recorded operation on its recorded node alone.
        let replayPool = try makePool(.sharded, servers.map(\.endpoint))
        for failure in report.failures {
            let replayed = await replayPool.execute([failure.operation], on: failure.node)
            #expect(replayed.isSuccess, "\(replayed.failures)")
        }
        for server in servers {
            #expect(try server.keys().isEmpty)
        }
    }

    @Test(.timeLimit(.minutes(2))) func overlappingPurgesOfOneTagLoseNoMember() async throws {
        let server = try await RedisServer.start()
        let members = (0..<5_000).map { "member:\($0)" }
        try await server.seed(members)
        try await server.pipe([["SADD", "tag:hot"] + members])
        // Two workers with small pages: the second starts when the first is two-fifths
        // done and, slower, is still scanning when the first is done. Were the snapshot
        // unlinked then, the new members the first had passed by and the second had not
        // reached yet would be lost. Replies come late through proxies, so each purge
        // takes seconds on any machine and the first is surely still running at the start of the second.
        let firstProxy = try TCPProxy(to: server.port)
        let secondProxy = try TCPProxy(to: server.port)
        firstProxy.delayReplies(by: .milliseconds(5))
        secondProxy.delayReplies(by: .milliseconds(10))
        let first = try makePool(.single, [firstProxy.endpoint], tuning: ExecutionTuning(scanCount: 10))
        let second = try makePool(.single, [secondProxy.endpoint], tuning: ExecutionTuning(scanCount: 5))
        let snapshot = Commands.tagPurgeKeys(forTagSet: "tag:hot").snapshot

        let firstPurge = Task { await first.execute([.purgeTag(setKey: "tag:hot")]) }
        while try Int(server.call("DBSIZE"))! > members.count * 3 / 5 { try await Task.sleep(for: .milliseconds(1)) }
        let late = (0..<20).map { "late:\($0)" }
        for key in late {
            try server.call("SET", key, "v")
            try server.call("SADD", "tag:hot", key)
        }
        try #require(try server.call("EXISTS", snapshot) == "1", "the first purge is still running")
        let secondPurge = Task { await second.execute([.purgeTag(setKey: "tag:hot")]) }
        let reports = [await firstPurge.value, await secondPurge.value]

        #expect(reports.allSatisfy { $0.isSuccess }, "\(reports.flatMap(\.failures))")
        #expect(try server.existing(members + late).isEmpty)
        #expect(try server.keys().isEmpty)
    }

    @Test func aLongScanReportsProgressAtEachPage() async throws {
        let server = try await RedisServer.start()
        let sessions = (0..<2_000).map { "session:\($0)" }
        let members = (0..<500).map { "member:\($0)" }
        try await server.seed(sessions + members)
        try await server.pipe([["SADD", "tag:all"] + members])
        let pool = try makePool(.single, [server.endpoint], tuning: ExecutionTuning(scanCount: 10))
        let steps = Atomic<Int>(0)

        // Set on this task, seen by the pool's per-node tasks.
        let report = await ExecutionProgress.reporting(to: { steps.add(1, ordering: .relaxed) }) {
            await pool.execute([.deletePattern(pattern: "session:*"), .purgeTag(setKey: "tag:all")])
        }

        #expect(report.isSuccess)
        #expect(try server.keys().isEmpty)
        // Each SCAN / SSCAN call visits about 10 buckets: hundreds of pages, each a step.
        #expect(steps.load(ordering: .relaxed) >= (sessions.count + members.count) / 10)
    }
}
