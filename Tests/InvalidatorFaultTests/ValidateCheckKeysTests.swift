import Foundation
import TestSupport
import Testing

/// `validate --check-keys` against a real pool, and the warnings `validate` gives
/// for templates that load but cannot do what was meant.
@Suite(.timeLimit(.minutes(2))) struct ValidateCheckKeysTests {
    @Test func aTemplateMissingTheApplicationPrefixIsWarnedAboutWithThePrefixSeen() async throws {
        let redis = try await RedisServer.start()
        try await redis.seed((0..<40).map { "shop:user:\($0)" } + (0..<10).map { "shop:cart:\($0)" } + ["tag:team:1", "session:1:a"])
        let scenario = try Scenario()
        try scenario.write("rules.yaml", """
            rules:
              - { name: users, match: { entity: user }, delete: ["user:{id}"] }
              - { name: carts, match: { entity: cart }, delete: ["shop:cart:{id}"], tags: ["team:{id}"] }
              - { name: sessions, match: { entity: session }, patterns: ["session:{id}:*"] }
            """)
        let config = try scenario.write("invalidator.yaml", """
            pools:
              cache: { nodes: ["\(redis.endpoint)"] }
            rules: rules.yaml
            sources: { redis_stream: { pool: cache, streams: [entity-changes] } }
            """)

        let (exit, output) = try runInvalidator(["validate", "--config", config, "--check-keys", "--sample", "1000"])
        #expect(exit == .success, "\(output)")
        #expect(output.contains("sampled 52 keys from 1 node"), "\(output)")
        let warnings = output.split(separator: "\n").filter { $0.hasPrefix("warning:") }
        #expect(warnings.count == 1, "\(output)")
        #expect(warnings.first?.contains("rule 'users': delete 'user:{id}' matches none of the 52 keys") == true, "\(output)")
        #expect(warnings.first?.contains("'shop:' (40 keys)") == true, "the prefix the template lacks is named: \(output)")
        #expect(output.contains("rule carts  delete shop:cart:{id}  pool cache  10/52"), "\(output)")
        #expect(output.contains("rule carts  tags team:{id}  pool cache  1/52"), "tags carry the pool's tag_prefix: \(output)")
        #expect(output.contains("rule sessions  patterns session:{id}:*  pool cache  1/52"), "\(output)")

        redis.kill()
        let (failedExit, failed) = try runInvalidator(["validate", "--config", config, "--check-keys"])
        #expect(failedExit == ChildProcess.Exit(status: 1, bySignal: false), "a pool that cannot be sampled fails the check: \(failed)")
    }

    @Test func suspiciousTemplatesAreWarnedAboutAndUnknownPoolsRefused() async throws {
        let scenario = try Scenario()
        let rules = try scenario.write("rules.yaml", """
            rules:
              - { name: literal, match: { entity: user }, patterns: ["user:{id}:profile"] }
              - { name: escaped, match: { entity: user }, patterns: ["user:{id}:\\\\*"] }
              - { name: bare, match: { entity: user }, delete: ["{id}"] }
              - { name: fine, match: { entity: user }, delete: ["user:{id}"], patterns: ["user:{id}:*"] }
            """)
        let (exit, output) = try runInvalidator(["validate", "--rules", rules])
        #expect(exit == .success, "warnings do not fail validation: \(output)")
        let warnings = output.split(separator: "\n").filter { $0.hasPrefix("warning:") }
        #expect(warnings.count == 3, "\(output)")
        #expect(warnings.contains { $0.contains("rule 'literal'") && $0.contains("no wildcard") }, "\(output)")
        #expect(warnings.contains { $0.contains("rule 'escaped'") && $0.contains("no wildcard") }, "an escaped * is literal: \(output)")
        #expect(warnings.contains { $0.contains("rule 'bare'") && $0.contains("nothing but a placeholder") }, "\(output)")

        try scenario.write("pooled.yaml", """
            rules:
              - { name: elsewhere, match: { entity: user }, pools: [missing], delete: ["user:{id}"] }
            """)
        let config = try scenario.write("invalidator.yaml", """
            pools:
              cache: { nodes: ["127.0.0.1:1"] }
            rules: pooled.yaml
            sources: { redis_stream: { pool: cache, streams: [entity-changes] } }
            """)
        let (poolExit, poolOutput) = try runInvalidator(["validate", "--config", config])
        #expect(poolExit == ChildProcess.Exit(status: 1, bySignal: false), "\(poolOutput)")
        #expect(poolOutput.contains("names pool 'missing', which the config does not define"), "\(poolOutput)")
    }
}
