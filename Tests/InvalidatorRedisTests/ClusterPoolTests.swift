import InvalidatorCore
import TestSupport
import Testing

@testable import InvalidatorRedis

@Suite struct ClusterPoolTests {
    @Test func routesKeyOperationsBySlotAndPatternsToEveryPrimary() async throws {
        let cluster = try await RedisCluster.start(primaries: 3)
        let keys = (0..<200).map { "user:\($0)" } + (0..<20).map { "{user:7}:field:\($0)" }
        let sessions = (0..<100).map { "session:\($0)" }
        var owners: [String: RedisServer] = [:]
        for key in keys + sessions {
            let owner = try cluster.server(owning: key)
            owners[key] = owner
            try owner.call("SET", key, "v")
        }
        for key in ["123456789", "{user1000}.following", "a{b}c", "foo{}{bar}", "é"] {
            #expect(try cluster.servers[0].call("CLUSTER", "KEYSLOT", key) == String(HashSlot.slot(of: key)))
        }
        // One seed is enough to discover the others.
        let pool = try makePool(.cluster, [cluster.endpoints[1]])
        let deleted = keys.enumerated().filter { $0.offset % 2 == 0 }.map(\.element)

        let report = await pool.execute(deleted.map { .delete(key: $0) } + [
            .deletePattern(pattern: "session:*"),
            .bump(key: "{user:7}:version"),
            .expire(key: "user:1", ttlMilliseconds: 60_000),
        ])

        #expect(report.isSuccess, "\(report.failures)")
        for server in cluster.servers {
            let node = endpoint(server.endpoint)
            let expectedKeys = Set(keys.filter { owners[$0] === server }).subtracting(deleted)
            let remaining = try server.keys().subtracting(["{user:7}:version"])
            #expect(remaining == expectedKeys)
            let succeeded = Set(report.result(for: node)?.succeeded ?? [])
            #expect(succeeded.contains(.deletePattern(pattern: "session:*")))
            for key in deleted where owners[key] === server {
                #expect(succeeded.contains(.delete(key: key)))
            }
        }
        #expect(try cluster.server(owning: "{user:7}:version").call("GET", "{user:7}:version") == "1")
        #expect((1...60_000).contains(Int(try owners["user:1"]!.call("PTTL", "user:1"))!))
    }

    @Test func tagSetOnItsOwnerWithMembersInOtherSlots() async throws {
        let cluster = try await RedisCluster.start(primaries: 3)
        let members = (0..<100).map { "product:\($0)" }
        for member in members { try cluster.server(owning: member).call("SET", member, "v") }
        let setOwner = try cluster.server(owning: "tag:catalog")
        try setOwner.call(["SADD", "tag:catalog"] + members)
        let pool = try makePool(.cluster, cluster.endpoints)

        let report = await pool.execute([.purgeTag(setKey: "tag:catalog")])

        #expect(report.isSuccess, "\(report.failures)")
        for server in cluster.servers {
            #expect(try server.keys().isEmpty)
        }
        #expect(report.result(for: endpoint(setOwner.endpoint))?.succeeded == [.purgeTag(setKey: "tag:catalog")])
    }

    @Test func followsMovedAndAskRedirections() async throws {
        let cluster = try await RedisCluster.start(primaries: 3)
        let pool = try makePool(.cluster, cluster.endpoints)
        // Learn the topology before it changes.
        #expect(await pool.execute([.delete(key: "warm-up")]).isSuccess)

        let movedKey = "moved-key"
        let asked = "asked-key"
        let source = try cluster.server(owning: movedKey)
        let target = cluster.servers.first { $0 !== source }!
        let targetID = try target.call("CLUSTER", "MYID")

        // MOVED: hand the (empty) slot to the target on every node.
        let movedSlot = String(HashSlot.slot(of: movedKey))
        for server in cluster.servers {
            #expect(try server.call("CLUSTER", "SETSLOT", movedSlot, "NODE", targetID) == "OK")
        }
        try target.call("SET", movedKey, "v")

        // ASK: the slot is migrating and the key already lives on the importing node.
        let askedOwner = try cluster.server(owning: asked)
        let importer = cluster.servers.first { $0 !== askedOwner }!
        let askedSlot = String(HashSlot.slot(of: asked))
        try importer.call("CLUSTER", "SETSLOT", askedSlot, "IMPORTING", askedOwner.call("CLUSTER", "MYID"))
        try askedOwner.call("CLUSTER", "SETSLOT", askedSlot, "MIGRATING", importer.call("CLUSTER", "MYID"))
        #expect(try importer.asking("SET", asked, "v") == "OK")

        let report = await pool.execute([.delete(key: movedKey), .delete(key: asked)])

        #expect(report.isSuccess, "\(report.failures)")
        #expect(try target.call("EXISTS", movedKey) == "0")
        #expect(try importer.asking("EXISTS", asked) == "0")
        #expect(report.result(for: endpoint(target.endpoint))?.succeeded.contains(.delete(key: movedKey)) == true)
        #expect(report.result(for: endpoint(importer.endpoint))?.succeeded.contains(.delete(key: asked)) == true)
    }
}
