import InvalidatorCore
import TestSupport
import Testing

@testable import InvalidatorRedis

/// `notify` messages reach a subscriber byte for byte: PUBLISH on a single node,
/// SPUBLISH to the owner of the channel's slot in a cluster.
@Suite struct PublishTests {
    /// JSON as the planner renders it for an id full of quotes, backslashes, braces and non-ASCII text.
    static let message = #"{"pattern":"user:acme:a\"b\\c{d}","tenantId":"acme","note":"ünï 🚀"}"#

    @Test func publishReachesASubscriberOnASingleNode() async throws {
        let server = try await RedisServer.start()
        let subscriber = try RedisSubscriber(server, channel: "cache:invalidate")
        let pool = try makePool(.single, [server.endpoint])
        // As a rule renders it for a hostile id.
        let rules = try RulesLoader.load(yaml: """
            rules:
              - name: user
                match: { entity: user }
                notify: { channel: "cache:invalidate", message: { pattern: "user:{tenant}:{id}", tenantId: "{tenant}", note: "ünï 🚀" } }
            """, file: "rules.yaml")
        let event = #"{"entity":"user","id":"a\"b\\c{d}","op":"update","tenant":"acme"}"#
        let plan = Planner(rules: rules, pools: [PoolTarget(name: "test")]).plan(try EventDecoder().decode(Array(event.utf8)))
        let operations = plan.notifications.flatMap { $0.operations.map(\.operation) }
        #expect(operations == [.publish(PublishMessage(channel: "cache:invalidate", message: Self.message))])

        let report = await pool.execute(operations)

        #expect(report.isSuccess, "\(report.failures)")
        let received = try subscriber.next()
        #expect(received.kind == "message" && received.channel == "cache:invalidate")
        #expect(received.payload == Array(Self.message.utf8))
    }

    @Test func shardedPublishReachesTheSlotOwnerInACluster() async throws {
        let cluster = try await RedisCluster.start(primaries: 3)
        let channel = "cache:invalidate:{tenant-7}"
        let subscriber = try RedisSubscriber(try cluster.server(owning: channel), channel: channel, sharded: true)
        // Any seed will do: the pool routes the channel like a key.
        let pool = try makePool(.cluster, [cluster.endpoints[0]])

        let report = await pool.execute([.publish(PublishMessage(channel: channel, message: Self.message, sharded: true))])

        #expect(report.isSuccess, "\(report.failures)")
        let received = try subscriber.next()
        #expect(received.kind == "smessage" && received.channel == channel)
        #expect(received.payload == Array(Self.message.utf8))
    }
}
