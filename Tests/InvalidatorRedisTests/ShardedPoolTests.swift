import InvalidatorCore
import TestSupport
import Testing

@testable import InvalidatorRedis

@Suite struct ShardedPoolTests {
    @Test func keyOperationsGoToTheirOwnerOnly() async throws {
        let servers = try await RedisServer.start(count: 3)
        // Varied leading bytes: twemproxy's 32-bit FNV-1a clusters keys that only differ at the end.
        let keys = (0..<300).map { "\($0):user" }
        // Every node holds every key, so a delete on the wrong node would show.
        for server in servers { try await server.seed(keys) }
        let pool = try makePool(.sharded, servers.map(\.endpoint))
        let ring = KetamaRing(servers: servers.map { endpoint($0.endpoint) })
        let deleted = Array(keys.prefix(150))

        let report = await pool.execute(deleted.map { .delete(key: $0) })

        #expect(report.isSuccess)
        for server in servers {
            let node = endpoint(server.endpoint)
            let owned = Set(deleted.filter { ring.server(for: $0) == node })
            #expect(!owned.isEmpty, "every node owns some of the keys")
            #expect(Set(report.result(for: node)?.succeeded ?? []) == Set(owned.map { .delete(key: $0) }))
            #expect(Set(try server.existing(keys)) == Set(keys).subtracting(owned))
        }
    }

    @Test func patternsAndTagsRunOnEveryNode() async throws {
        let servers = try await RedisServer.start(count: 3)
        let pool = try makePool(.sharded, servers.map(\.endpoint))
        let ring = KetamaRing(servers: servers.map { endpoint($0.endpoint) })
        let members = (0..<60).map { "cart:\($0 * 7919)" }
        for server in servers {
            try await server.seed(["session:1:a", "session:1:b", "session:2:a"])
        }
        // The tag set lives on one node; its members live on their own owners.
        for member in members {
            try servers.first { endpoint($0.endpoint) == ring.server(for: member) }!.call("SET", member, "v")
        }
        try await servers[0].pipe([["SADD", "tag:carts"] + members])

        let report = await pool.execute([.deletePattern(pattern: "session:1:*"), .purgeTag(setKey: "tag:carts")])

        #expect(report.isSuccess)
        for server in servers {
            #expect(try server.keys() == ["session:2:a"])
        }
        #expect(Set(report.nodes.map(\.node)) == Set(servers.map { endpoint($0.endpoint) }))
    }
}
