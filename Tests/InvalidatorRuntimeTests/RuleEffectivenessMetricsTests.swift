import Foundation
import InvalidatorRuntime
import TestSupport
import Testing

/// `invalidator_keys_removed_total{rule}` and `invalidator_rule_operations_total{rule,result}`
/// say what the deletes, patterns and tags of each rule really removed from Redis.
@Suite(.timeLimit(.minutes(2))) struct RuleEffectivenessMetricsTests {
    /// Every rule on `primary` only: a rule without `pools` runs on the dead-letter pool too.
    /// `misprefixed` comes first, so its absent keys share a batch with `user`'s existing ones.
    static let rules = """
        rules:
          - name: misprefixed
            match: { entity: user }
            pools: [primary]
            delete: ["cache:user:{id}"]
          - name: user
            match: { entity: user }
            pools: [primary]
            delete: ["user:{id}"]
          - name: sessions
            match: { entity: session }
            pools: [primary]
            patterns: ["session:{id}:*"]
          - name: team
            match: { entity: team }
            pools: [primary]
            tags: ["team:{id}"]
        """

    @Test func removedKeysAndOperationsPerRuleMatchWhatRedisHeld() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        try Self.rules.write(to: harness.folder.appendingPathComponent("rules.yaml"), atomically: true, encoding: .utf8)
        let redis = harness.redis
        // Exists: user:1, user:2 (not user:3); three keys of session 9 (none of session 8);
        // tag team:5 has three members, two of which exist (team 6 has no set).
        try await seedKeys(redis, ["user:1", "user:2", "session:9:a", "session:9:b", "session:9:c", "member:1", "member:2", "other"])
        _ = try redis.call("SADD", "tag:team:5", "member:1", "member:2", "member:gone")
        try await harness.produce([
            #"{"entity":"user","ids":["1","2","3"],"op":"update"}"#,
            #"{"entity":"session","id":"9","op":"delete"}"#,
            #"{"entity":"session","id":"8","op":"delete"}"#,
            #"{"entity":"team","id":"5","op":"update"}"#,
            #"{"entity":"team","id":"6","op":"update"}"#,
        ])
        let observed = try ObservedWorker(harness)
        #expect(try await eventually { observed.value(MetricName.events, ["source": "kafka", "result": "applied"]) == 5 })
        #expect(try redis.keys() == ["other"], "everything the rules name is gone, the rest is left")

        let expected: [(rule: String, keys: Double?, removed: Double?, absent: Double?)] = [
            ("user", 2, 2, 1),
            ("misprefixed", nil, nil, 3),
            ("sessions", 3, 1, 1),
            ("team", 2, 1, 1),
        ]
        for rule in expected {
            #expect(observed.value(MetricName.keysRemoved, ["rule": rule.rule]) == rule.keys, "keys removed by \(rule.rule)")
            #expect(observed.value(MetricName.ruleOperations, ["rule": rule.rule, "result": "removed"]) == rule.removed, "\(rule.rule) removed")
            #expect(observed.value(MetricName.ruleOperations, ["rule": rule.rule, "result": "absent"]) == rule.absent, "\(rule.rule) absent")
            #expect(observed.value(MetricName.ruleOperations, ["rule": rule.rule, "result": "failed"]) == nil, "\(rule.rule) failed")
        }
        try await observed.running.stop()
    }

    @Test func failedOperationsAreCountedPerRule() async throws {
        let harness = try await WorkerHarness(partitions: 1, retryAttempts: 1)
        try Self.rules.write(to: harness.folder.appendingPathComponent("rules.yaml"), atomically: true, encoding: .utf8)
        harness.redis.kill()
        try await harness.produce([#"{"entity":"user","id":"1","op":"update"}"#])
        let observed = try ObservedWorker(harness)
        #expect(try await eventually { observed.value(MetricName.ruleOperations, ["rule": "user", "result": "failed"]) == 1 })
        #expect(observed.value(MetricName.ruleOperations, ["rule": "misprefixed", "result": "failed"]) == 1)
        #expect(observed.value(MetricName.keysRemoved, ["rule": "user"]) == nil)
        try await observed.running.stop()
    }
}
