import InvalidatorCore
import TestSupport
import Testing

@testable import InvalidatorRedis

/// Every kind of operation against one node, used by the single and replicated tests.
private let mixedBatch: [CacheOperation] = [
    .delete(key: "user:acme:1"),
    .delete(key: "user:acme:2"),
    .delete(key: "user:acme:1"),
    .deletePattern(pattern: "session:acme:1:*"),
    .purgeTag(setKey: "tag:tenant:acme:users"),
    // Long enough that a loaded CI machine cannot let it lapse before the check.
    .expire(key: "page:1", ttlMilliseconds: 3_600_000),
    .bump(key: "version:user:1"),
    .precompute(PrecomputeJob(
        stream: "precompute:jobs", job: "warm-user",
        args: [.init(name: "id", value: "1"), .init(name: "tenant", value: "ac\"me")],
        eventID: "e-1", occurredAt: "2026-11-20T10:00:00Z"
    )),
]

private func seedMixedBatchData(on server: RedisServer) async throws {
    try await server.seed([
        "user:acme:1", "user:acme:2", "user:acme:3", "session:acme:1:a", "session:acme:1:b",
        "session:acme:10:a", "member:1", "member:2", "page:1",
    ])
    try server.call("SADD", "tag:tenant:acme:users", "member:1", "member:2")
}

private func expectMixedBatchApplied(on server: RedisServer) throws {
    #expect(try server.keys() == [
        "user:acme:3", "session:acme:10:a", "page:1", "version:user:1", "precompute:jobs",
    ])
    let ttl = try #require(Int(server.call("PTTL", "page:1")))
    #expect((1...3_600_000).contains(ttl))
    #expect(try server.call("GET", "version:user:1") == "1")
    let entry = try server.call("XRANGE", "precompute:jobs", "-", "+")
    #expect(entry.contains("job\nwarm-user\nargs\n{\"id\":\"1\",\"tenant\":\"ac\\\"me\"}\nevent_id\ne-1\noccurred_at\n2026-11-20T10:00:00Z"))
}

@Suite struct SingleAndReplicatedPoolTests {
    @Test func singleNodeAppliesEveryOperationKind() async throws {
        let server = try await RedisServer.start()
        try await seedMixedBatchData(on: server)
        let pool = try makePool(.single, [server.endpoint])

        let report = await pool.execute(mixedBatch)

        #expect(report.isSuccess)
        #expect(report.nodes.map(\.node) == [endpoint(server.endpoint)])
        #expect(Set(report.nodes[0].succeeded) == Set(mixedBatch))
        #expect(report.nodes[0].succeeded.count == mixedBatch.count - 1)
        try expectMixedBatchApplied(on: server)
    }

    @Test func replicatedPoolAppliesEveryOperationOnEveryNode() async throws {
        let servers = try await RedisServer.start(count: 2)
        for server in servers { try await seedMixedBatchData(on: server) }
        let pool = try makePool(.replicated, servers.map(\.endpoint))

        let report = await pool.execute(mixedBatch)

        #expect(report.isSuccess)
        #expect(Set(report.nodes.map(\.node)) == Set(servers.map { endpoint($0.endpoint) }))
        for node in report.nodes {
            #expect(Set(node.succeeded) == Set(mixedBatch))
        }
        for server in servers { try expectMixedBatchApplied(on: server) }
    }

    @Test func selectsTheConfiguredDatabase() async throws {
        let server = try await RedisServer.start()
        try await server.cli("-n", "2", "SET", "k", "v")
        try server.call("SET", "k", "v")
        let pool = try makePool(.single, [server.endpoint], database: 2)

        #expect(await pool.execute([.delete(key: "k")]).isSuccess)
        #expect(try await server.cli("-n", "2", "EXISTS", "k") == "0")
        #expect(try server.call("EXISTS", "k") == "1")
    }

    // Invalid pools (a single pool with two nodes, a cluster with database 1, a
    // node without a port, no nodes) never reach the Redis layer: the configuration
    // loader refuses them with their positions (InvalidConfigTests).
}
