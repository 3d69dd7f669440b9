import Foundation
import TestSupport
import Testing

/// A publisher's own invalidation messages, `{"pattern": ..., "tenantId": ...}` on a
/// pub/sub channel, read by the real executable under an allow-list: hostile
/// patterns among them delete nothing, the allowed one deletes exactly its tenant's keys.
@Suite(.timeLimit(.minutes(2))) struct DirectMessageFaultTests {
    @Test func hostilePatternsAmongAPublishersMessagesDeleteNothing() async throws {
        let redis = try await RedisServer.start()
        let scenario = try Scenario()
        let config = try scenario.write("invalidator.yaml", """
            sources:
              redis_pubsub:
                pool: cache
                channels: ["cache:invalidate"]
                format: direct
                fields: { patterns: pattern, tenant: tenantId }
                allow: ["user:{tenant}:*"]
            pools:
              cache: { nodes: ["\(redis.endpoint)"] }
            rules: []
            allow_empty_rules: true
            """)
        let tenantKeys = (0..<2000).map { "user:acme:\($0)" }
        let otherKeys = (0..<100).map { "user:globex:\($0)" } + ["user:acme", "user:acme2:1", "session:acme:1"]
        try await redis.seed(tenantKeys + otherKeys)
        let worker = try InvalidatorProcess(run: config)
        try #require(try await worker.waitUntilReady(), "\(worker.log)")
        try #require(try await eventually {
            try redis.call("PUBSUB", "NUMSUB", "cache:invalidate").hasSuffix("\n1")
        })

        let hostile = [
            #"{"pattern": "user:globex:*", "tenantId": "acme"}"#,
            #"{"pattern": "*", "tenantId": "acme"}"#,
            #"{"pattern": "user:*", "tenantId": "*"}"#,
            #"{"pattern": "user:acme*", "tenantId": "acme"}"#,
        ]
        for message in hostile {
            try redis.call("PUBLISH", "cache:invalidate", message)
        }
        try redis.call("PUBLISH", "cache:invalidate", #"{"pattern": "user:acme:*", "tenantId": "acme"}"#)
        let elapsed = try await timeUntil(timeout: .seconds(30)) { try existingKeys(redis, tenantKeys) == 0 }
        #expect(elapsed != nil, "\(worker.log)")
        let deadLetters = { try redis.call("XRANGE", "invalidator:dead-letters", "-", "+") }
        #expect(try await eventually {
            try deadLetters().components(separatedBy: "\nnot-allowed\n").count - 1 == hostile.count
        }, "\((try? deadLetters()) ?? "")")
        #expect(try existingKeys(redis, otherKeys) == otherKeys.count)
        #expect(worker.terminate() == .success, "\(worker.log)")

        // explain reads a message as that source does.
        let refused = try runInvalidator(["explain", "--config", config, "--event", hostile[0]])
        #expect(refused.output.contains("dead-letter (not-allowed)"), "\(refused.output)")
        #expect(refused.output.contains("failed 'user:{tenant}:*' (as 'user:acme:*')"), "\(refused.output)")
        let allowed = try runInvalidator(["explain", "--config", config, "--source", "redis_pubsub", "--event", #"{"pattern": "user:acme:*", "tenantId": "acme"}"#])
        #expect(allowed.output.contains("pattern  user:acme:*"), "\(allowed.output)")
        report(
            "direct messages: 4 hostile patterns (other tenant, *, tenant '*', no separator) then one allowed, on pub/sub",
            "4 dead-lettered not-allowed, 0 of \(otherKeys.count) other keys deleted; the allowed pattern removed \(tenantKeys.count) keys in \(elapsed.map { "\(Int(($0 / .milliseconds(1)).rounded())) ms" } ?? "never") after publishing")
    }
}
