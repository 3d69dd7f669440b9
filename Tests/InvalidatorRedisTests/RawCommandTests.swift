import InvalidatorCore
import TestSupport
import Testing

@testable import InvalidatorRedis

@Suite struct RawCommandTests {
    @Test func pipelineRunsOnTheRoutingKeysOwner() async throws {
        let cluster = try await RedisCluster.start(primaries: 3)
        let pool = try makePool(.cluster, [cluster.endpoints[0]])

        let replies = try await pool.pipeline(
            [["XADD", "dead-letters", "*", "reason", "test"], ["INCR", "dead-letters"], ["XLEN", "dead-letters"]],
            routingKey: "dead-letters"
        )

        #expect(replies[0].string != nil)
        #expect(replies[1].error?.code == .wrongType)
        #expect(replies[2] == .integer(1))
        let owner = try cluster.server(owning: "dead-letters")
        #expect(try await pool.node(for: "dead-letters") == endpoint(owner.endpoint))
        #expect(try owner.call("XLEN", "dead-letters") == "1")
    }

    @Test func pipelineThrowsWhenTheNodeIsDown() async throws {
        let server = try await RedisServer.start()
        let pool = try makePool(.single, [server.endpoint])
        server.kill()
        await #expect(throws: RedisError.self) {
            try await pool.pipeline([["PING"]], routingKey: "any")
        }
    }

    @Test func dedicatedConnectionReceivesPubSubMessages() async throws {
        let server = try await RedisServer.start()
        let pool = try makePool(.single, [server.endpoint])
        let subscriber = try await pool.dedicatedConnection(routingKey: "entity-changes", commandTimeout: .seconds(5))

        let confirmation = try await subscriber.send(["SUBSCRIBE", "entity-changes"])
        #expect(confirmation.array?.first?.string == "subscribe")
        try server.call("PUBLISH", "entity-changes", "{\"entity\":\"user\"}")
        let message = try await subscriber.receive()

        #expect(message.array?.map(\.string) == ["message", "entity-changes", "{\"entity\":\"user\"}"])
        await subscriber.close()
    }

    @Test func pingReportsEachNode() async throws {
        let servers = try await RedisServer.start(count: 2)
        let pool = try makePool(.replicated, servers.map(\.endpoint), retry: RetryPolicy(attempts: 1))
        servers[1].kill()

        let statuses = await pool.ping()

        #expect(statuses.count == 2)
        #expect(statuses[endpoint(servers[0].endpoint)] == .some(nil))
        #expect(statuses[endpoint(servers[1].endpoint)]??.code == .connection)
    }
}
