import InvalidatorCore
import Testing

/// `canary:` in the config, canary events on every source format, and the built-in rule.
@Suite struct CanaryConfigTests {
    static func config(canary: String = "", source: String = "redis_stream: { pool: primary, streams: [events] }", rules: String? = nil) -> String {
        """
        sources:
          \(source)
        pools:
          primary: { nodes: ["127.0.0.1:6379"] }
          edge: { nodes: ["127.0.0.1:6380"] }
        rules:
        \(rules ?? "  - { name: user, match: { entity: user }, delete: [\"user:{id}\"] }")
        \(canary)
        """
    }

    @Test func defaultsAreOffWithTheBuiltInNames() throws {
        let canary = try load(Self.config()).canary
        #expect(!canary.enabled)
        #expect(canary.interval == .seconds(30) && canary.timeout == .seconds(60))
        #expect(canary.entity == "invalidator-canary" && canary.keyPrefix == "invalidator:canary:")
        #expect(canary.pools == nil && canary.failHealthzAfter == 0)
    }

    @Test func readsEverySetting() throws {
        let canary = try load(Self.config(canary: """
            canary:
              enabled: true
              interval: 5s
              timeout: 10s
              pools: [edge]
              entity: probe
              key_prefix: "probe:"
              fail_healthz_after: 3
            """)).canary
        #expect(canary.enabled && canary.interval == .seconds(5) && canary.timeout == .seconds(10))
        #expect(canary.pools == ["edge"] && canary.entity == "probe" && canary.keyPrefix == "probe:" && canary.failHealthzAfter == 3)
        #expect(canary.targetPools(in: ["primary", "edge"]) == ["edge"])
    }

    @Test func reportsBadSettingsWithTheirPositions() {
        let found = diagnostics(Self.config(canary: """
            canary:
              interval: 500ms
              timeout: 2h
              pools: [nowhere]
              entity: ""
              key_prefix: ""
              fail_healthz_after: -1
              colour: red
            """))
        #expect(found.contains { $0.hasPrefix("invalidator.yaml:15:3:") && $0.contains("colour") }, "\(found)")
        #expect(found.contains { $0.hasPrefix("invalidator.yaml:9:13:") && $0.contains("canary.interval") }, "\(found)")
        #expect(found.contains { $0.hasPrefix("invalidator.yaml:10:12:") && $0.contains("canary.timeout") }, "\(found)")
        #expect(found.contains { $0.hasPrefix("invalidator.yaml:11:11:") && $0.contains("'nowhere' is not a pool") }, "\(found)")
        #expect(found.contains { $0.contains("canary.entity is empty") }, "\(found)")
        #expect(found.contains { $0.contains("canary.key_prefix is empty") }, "\(found)")
        #expect(found.contains { $0.contains("canary.fail_healthz_after") }, "\(found)")
    }

    @Test func warnsThatPatternSubscriptionsCarryNoCanary() throws {
        let source = #"redis_pubsub: { pool: primary, patterns: ["changes.*"] }"#
        #expect(try load(Self.config(source: source)).warnings.isEmpty, "off: nothing to warn about")
        let warnings = try load(Self.config(canary: "canary: { enabled: true }", source: source)).warnings
        #expect(warnings == ["sources.redis_pubsub subscribes to patterns, which carry no canary (there is no channel to publish on); add a literal channel for the canary to check this source"])
    }

    @Test func refusesAUserRuleMatchingTheCanaryEntity() {
        let rules = "  - { name: sneaky, match: { entity: [user, invalidator-canary] }, delete: [\"x:{id}\"] }"
        let found = diagnostics(Self.config(rules: rules))
        #expect(found.count == 1)
        #expect(found.first?.hasPrefix("invalidator.yaml:7:28:") == true && found.first?.contains("rule 'sneaky' matches entity 'invalidator-canary'") == true, "\(found)")
        // With another canary entity, the name is free.
        #expect(diagnostics(Self.config(canary: "canary: { entity: my-canary }", rules: rules)).isEmpty)
        let fromFile = #expect(throws: ValidationError.self) {
            try RulesLoader.load(yaml: "rules:\n" + rules, file: "rules.yaml", reservedEntity: "invalidator-canary")
        }
        #expect(fromFile?.diagnostics.first?.description.hasPrefix("rules.yaml:2:") == true)
    }

    static let canaryEvent = #"{"entity":"invalidator-canary","id":"w1.kafka:t.7","op":"update","event_id":"w1.kafka:t.7","occurred_at":"2026-12-01T00:00:00.000Z"}"#

    @Test(arguments: [
        "kafka: { brokers: b:9092, topics: [t], format: debezium }",
        "kafka: { brokers: b:9092, topics: [t], format: cloudevents }",
        "kafka: { brokers: b:9092, topics: [t], format: native, fields: { entity: table, id: row.pk } }",
        #"redis_stream: { pool: primary, streams: [s], format: direct, allow: ["user:{tenant}:*"] }"#,
    ])
    func everySourceFormatReadsCanaryEvents(source: String) throws {
        let configuration = try load(Self.config(source: source))
        let decoder = configuration.sources.kafka?.decoder ?? configuration.sources.redisStream?.decoder
        let decoded = try #require(try decoder?.decodeMessage(Array(Self.canaryEvent.utf8)))
        #expect(decoded == .change(ChangeEvent(
            entity: "invalidator-canary", ids: ["w1.kafka:t.7"], op: .update, occurredAt: "2026-12-01T00:00:00.000Z", eventID: "w1.kafka:t.7")))
    }

    @Test func onlyTheBuiltInRulePlansCanaryEventsOnTheCanaryPools() throws {
        let configuration = try load(Self.config(canary: "canary: { pools: [edge] }"))
        guard case .inline(let rules) = configuration.rules else { Issue.record("inline rules expected"); return }
        let planner = configuration.planner(rules: rules)
        let plan = planner.plan(ChangeEvent(entity: "invalidator-canary", ids: ["w1.x.1"], op: .update))
        #expect(plan.matchedRules == ["canary"])
        #expect(plan.pools.map(\.pool) == ["edge"])
        #expect(plan.pools.first?.operations == [PlannedOperation(.delete(key: "invalidator:canary:w1.x.1"), rule: "canary")])
        #expect(planner.plan(ChangeEvent(entity: "user", ids: ["1"], op: .update)).matchedRules == ["user"])
    }
}
