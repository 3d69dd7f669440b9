import Foundation
import InvalidatorRuntime
import TestSupport
import Testing

/// Publishers as they are: direct invalidation messages under an allow-list, and
/// change events whose fields live under other names, through real sources.
@Suite(.timeLimit(.minutes(2))) struct PublisherMessagesTests {
    static let directPubSub = """
          redis_pubsub:
            pool: primary
            channels: ["cache:invalidate"]
            format: direct
            fields: { patterns: pattern, tenant: tenantId }
            allow: ["user:{tenant}:*", "api:*:{tenant}:users:*"]
        """

    @Test func directPatternMessagesDeleteExactlyTheAllowedKeysOfTheirTenant() async throws {
        let harness = try await RedisSourceHarness(sources: Self.directPubSub)
        let allowed = ["user:acme:1", "user:acme:2", "user:*:1"]
        let kept = ["user:acme", "user:globex:1", "session:acme:1", "api:v1:acme:orders:1", "user:acme2:1", "other:acme:1"]
        try await seedKeys(harness.redis, allowed + kept)
        let running = RunningWorker(try harness.makeWorker())
        let source = try #require(running.worker.redisPubSub)
        #expect(try await eventually { source.isSubscribed })

        try await harness.publish([
            #"{"pattern": "session:acme:*", "tenantId": "acme"}"#,   // not in the list
            #"{"pattern": "user:globex:*", "tenantId": "acme"}"#,    // another tenant's keys
            #"{"pattern": "*", "tenantId": "acme"}"#,                // everything
            #"{"pattern": "user:*", "tenantId": "*"}"#,              // a tenant of * widens nothing
            #"{"pattern": "user:acme*", "tenantId": "acme"}"#,       // would reach user:acme2:1
            #"{"pattern": "user:acme:*", "tenantId": "acme"}"#,
            #"{"pattern": "user:\\*:*", "tenantId": "*"}"#,          // the literal tenant '*'
        ], on: "cache:invalidate")

        #expect(try await eventually { try existingKeys(harness.redis, allowed) == 0 })
        #expect(try await eventually { try harness.deadLetterReasons().count == 5 })
        try await running.stop()
        #expect(try existingKeys(harness.redis, kept) == kept.count)
        #expect(try harness.deadLetterReasons() == Array(repeating: "not-allowed", count: 5))
        let records = try harness.deadLetterRecords()
        #expect(records.contains("pattern 'user:globex:*' is not allowed for tenant 'acme'"))
        #expect(records.contains("'user:{tenant}:*' (as 'user:acme:*')"))
    }

    @Test func directMessagesOnAStreamRunKeysPatternsAndNothingElse() async throws {
        let harness = try await RedisSourceHarness(sources: """
              redis_stream:
                pool: primary
                streams: ["cache:invalidate"]
                group: invalidator
                format: direct
                fields: { tenant: ctx.tenantId }
                allow: ["user:{tenant}:*", "api:*:{tenant}:users:*"]
                pools: [primary]
            """)
        let allowed = ["user:acme:1", "api:v1:acme:users:7", "api:v2:acme:users:8"]
        let kept = ["api:v1:acme:orders:1", "api:v1:globex:users:7", "user:globex:1"]
        try await seedKeys(harness.redis, allowed + kept)
        try await harness.add([
            #"{"keys": ["user:acme:1"], "patterns": "api:*:acme:users:*", "ctx": {"tenantId": "acme"}}"#,
            // One request outside the list refuses the whole message.
            #"{"keys": ["user:acme:9", "user:globex:1"], "ctx": {"tenantId": "acme"}}"#,
            #"{"patterns": "api:*", "ctx": {"tenantId": "acme"}}"#,
        ], to: "cache:invalidate")
        let running = RunningWorker(try harness.makeWorker())
        #expect(try await eventually { try existingKeys(harness.redis, allowed) == 0 })
        #expect(try await eventually { try harness.deadLetterReasons().count == 2 })
        #expect(try await eventually { try harness.pending("cache:invalidate") == 0 })
        try await running.stop()
        #expect(try existingKeys(harness.redis, kept) == kept.count)
        #expect(try harness.deadLetterReasons() == ["not-allowed", "not-allowed"])
    }

    @Test func mappedNativeAndDebeziumEventsThroughRealSources() async throws {
        let harness = try await RedisSourceHarness(sources: """
              redis_stream:
                pool: primary
                streams: ["entity-changes"]
                group: invalidator
                format: native
                fields: { entity: type, op: action, tenant: tenantId, id: payload.after.user_id }
                op_values: { created: create, changed: update }
              redis_pubsub:
                pool: primary
                channels: ["dbz"]
                format: debezium
                fields: { id: [org_id, user_id], tenant: tenant_id }
            """)
        let keys = ["org:acme:42", "org:acme:7:u1", "org:globex:7:u2"]
        let kept = ["org:acme:7", "org:acme:u1", "org:ignored:42"]
        try await seedKeys(harness.redis, keys + kept)
        let running = RunningWorker(try harness.makeWorker())
        let pubsub = try #require(running.worker.redisPubSub)
        #expect(try await eventually { pubsub.isSubscribed })
        try await harness.add([
            #"{"type": "org", "action": "changed", "tenant": "ignored", "tenantId": "acme", "payload": {"after": {"user_id": 42}}}"#,
        ])
        try await harness.publish([
            #"{"payload": {"op": "u", "source": {"table": "org"}, "before": null, "after": {"org_id": 7, "user_id": "u1", "tenant_id": "acme"}}}"#,
            #"{"payload": {"op": "d", "source": {"table": "org"}, "before": {"org_id": 7, "user_id": "u2", "tenant_id": "globex"}, "after": null}}"#,
            // No user_id: the composite key is incomplete, so the row is dead-lettered, not half-keyed.
            #"{"payload": {"op": "c", "source": {"table": "org"}, "after": {"org_id": 7, "tenant_id": "acme"}}}"#,
        ], on: "dbz")
        #expect(try await eventually { try existingKeys(harness.redis, keys) == 0 })
        #expect(try await eventually { try harness.deadLetterReasons().count == 1 })
        try await running.stop()
        #expect(try existingKeys(harness.redis, kept) == kept.count)
        #expect(try harness.deadLetterReasons() == ["schema-violation"])
    }

    @Test func mappedCloudEventsThroughAStream() async throws {
        let harness = try await RedisSourceHarness(sources: """
              redis_stream:
                pool: primary
                streams: ["entity-changes"]
                group: invalidator
                format: cloudevents
                fields: { tenant: ctx.tenantId, id: orgId }
            """)
        try await seedKeys(harness.redis, ["org:acme:5", "org:acme:6"])
        try await harness.add([
            #"{"specversion": "1.0", "id": "e1", "source": "s", "type": "t", "data": {"entity": "org", "op": "update", "orgId": 5, "ctx": {"tenantId": "acme"}}}"#,
        ])
        let running = RunningWorker(try harness.makeWorker())
        #expect(try await eventually { try existingKeys(harness.redis, ["org:acme:5"]) == 0 })
        #expect(try await eventually { try harness.pending() == 0 })
        try await running.stop()
        #expect(try existingKeys(harness.redis, ["org:acme:6"]) == 1)
        #expect(try harness.deadLetterReasons().isEmpty)
    }

    @Test func reprocessRunsANotAllowedMessageOnceTheAllowListIsWidened() async throws {
        let harness = try await RedisSourceHarness(sources: Self.directPubSub)
        try await seedKeys(harness.redis, ["session:acme:1", "session:acme:2", "session:globex:1"])
        let running = RunningWorker(try harness.makeWorker())
        let source = try #require(running.worker.redisPubSub)
        #expect(try await eventually { source.isSubscribed })
        try await harness.publish([#"{"pattern": "session:acme:*", "tenantId": "acme"}"#], on: "cache:invalidate")
        #expect(try await eventually { try harness.deadLetterReasons() == ["not-allowed"] })
        try await running.stop()

        let configPath = harness.folder.appendingPathComponent("invalidator.yaml")
        let loadedBefore = try ConfigurationFiles.load(configPath: configPath.path, environment: [:])
        let unchanged = try await runReplay(loadedBefore) { $0.reprocess = true }
        #expect(unchanged.replayed == 0 && unchanged.failed == 1)
        #expect(try existingKeys(harness.redis, ["session:acme:1", "session:acme:2"]) == 2)

        let config = try String(contentsOf: configPath, encoding: .utf8)
        let widened = config.replacingOccurrences(of: #"allow: ["user:{tenant}:*""#, with: #"allow: ["session:{tenant}:*", "user:{tenant}:*""#)
        #expect(widened != config)
        try widened.write(to: configPath, atomically: true, encoding: .utf8)
        let result = try await runReplay(try ConfigurationFiles.load(configPath: configPath.path, environment: [:])) { $0.reprocess = true }
        #expect(result.replayed == 1 && result.failed == 0 && result.exitCode == 0)
        // Without `pools:`, a direct message runs on every pool (here the cache and the dead-letter node).
        #expect(result.records.first?.operations == ["pattern session:acme:*", "pattern session:acme:*"])
        #expect(try existingKeys(harness.redis, ["session:acme:1", "session:acme:2"]) == 0)
        #expect(try existingKeys(harness.redis, ["session:globex:1"]) == 1)
        #expect(try harness.deadLetterReasons().isEmpty)
    }
}
