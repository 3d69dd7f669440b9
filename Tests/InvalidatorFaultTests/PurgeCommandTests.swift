import Foundation
import TestSupport
import Testing

/// `invalidator purge`, run as an operator would, against single, replicated and
/// cluster pools: a dry run counts what is there and changes nothing; a purge
/// removes exactly the keys, pattern matches and tag members named.
@Suite(.timeLimit(.minutes(3))) struct PurgeCommandTests {
    @Test func singlePoolDryRunCountsAndPurgeRemovesKeysPatternsAndTags() async throws {
        let redis = try await RedisServer.start()
        let scenario = try Scenario()
        let config = try writeConfig(scenario, pool: "{ nodes: [\"\(redis.endpoint)\"] }", events: redis)
        try await redis.seed(["user:1", "user:2", "user:3", "session:1", "session:2", "member:1", "member:2", "keep:1"])
        _ = try redis.call("SADD", "tag:team:1", "member:1", "member:2", "member:gone")
        let before = try redis.keys()
        let arguments = ["purge", "--config", config, "--pool", "cache", "--key", "absent:1", "--key", "user:1",
                         "--pattern", "session:*", "--tag", "team:1"]

        let (dryExit, dryOutput) = try runInvalidator(arguments + ["--dry-run", "--format", "json"])
        #expect(dryExit == .success, "\(dryOutput)")
        #expect(try redis.keys() == before, "a dry run removes nothing")
        let dryRun = try PurgeJSON(dryOutput)
        #expect(dryRun.dryRun && dryRun.ok)
        #expect(dryRun.keys(redis.endpoint, "delete", "user:1") == 1)
        #expect(dryRun.keys(redis.endpoint, "delete", "absent:1") == 0)
        #expect(dryRun.keys(redis.endpoint, "pattern", "session:*") == 2)
        #expect(dryRun.keys(redis.endpoint, "tag", "tag:team:1") == 2, "the existing members, with the pool's tag_prefix")
        #expect(Set(dryRun.sample(redis.endpoint, "pattern", "session:*")) == ["session:1", "session:2"])
        #expect(dryRun.total == 5)

        let (exit, output) = try runInvalidator(arguments + ["--format", "json"])
        #expect(exit == .success, "\(output)")
        #expect(try redis.keys() == ["user:2", "user:3", "keep:1"])
        let purged = try PurgeJSON(output)
        #expect(!purged.dryRun && purged.ok && purged.total == 5)
        #expect(purged.keys(redis.endpoint, "delete", "absent:1") == 0, "each key's own count, though it came first")
        #expect(purged.keys(redis.endpoint, "delete", "user:1") == 1)
        #expect(purged.keys(redis.endpoint, "tag", "tag:team:1") == 2)
    }

    @Test func replicatedPoolCountsAndPurgesEveryCopy() async throws {
        let servers = try await RedisServer.start(count: 2)
        let scenario = try Scenario()
        let nodes = servers.map { "\"\($0.endpoint)\"" }.joined(separator: ", ")
        let config = try writeConfig(scenario, pool: "{ mode: replicated, nodes: [\(nodes)] }", events: servers[0])
        try await servers[0].seed(["page:1", "page:2", "page:3", "other"])
        try await servers[1].seed(["page:1", "other"])

        let (dryExit, dryOutput) = try runInvalidator(
            ["purge", "--config", config, "--pool", "cache", "--pattern", "page:*", "--dry-run", "--format", "json"])
        #expect(dryExit == .success, "\(dryOutput)")
        let dryRun = try PurgeJSON(dryOutput)
        #expect(dryRun.keys(servers[0].endpoint, "pattern", "page:*") == 3)
        #expect(dryRun.keys(servers[1].endpoint, "pattern", "page:*") == 1)
        #expect(try servers[0].keys().count == 4)

        let (exit, output) = try runInvalidator(["purge", "--config", config, "--pool", "cache", "--pattern", "page:*", "--format", "json"])
        #expect(exit == .success, "\(output)")
        let purged = try PurgeJSON(output)
        #expect(!purged.dryRun && purged.ok)
        #expect(purged.keys(servers[0].endpoint, "pattern", "page:*") == 3)
        #expect(purged.keys(servers[1].endpoint, "pattern", "page:*") == 1)
        #expect(try servers[0].keys() == ["other"])
        #expect(try servers[1].keys() == ["other"])
    }

    @Test func clusterPoolRoutesKeysPatternsAndTagMembers() async throws {
        let cluster = try await RedisCluster.start(primaries: 3)
        let events = try await RedisServer.start()
        let scenario = try Scenario()
        let nodes = cluster.endpoints.map { "\"\($0)\"" }.joined(separator: ", ")
        let config = try writeConfig(scenario, pool: "{ mode: cluster, nodes: [\(nodes)] }", events: events)
        let items = (0..<30).map { "item:\($0)" }
        for key in items + ["keep:1"] {
            _ = try cluster.server(owning: key).call("SET", key, "v")
        }
        let members = (0..<12).map { "member:\($0)" }
        for key in members { _ = try cluster.server(owning: key).call("SET", key, "v") }
        _ = try cluster.server(owning: "tag:group").call(["SADD", "tag:group"] + members)
        let holders = Set(try members.map { try cluster.server(owning: $0).port })
        try #require(holders.count > 1, "the members live on several primaries")

        let arguments = ["purge", "--config", config, "--pool", "cache", "--key", "item:0", "--pattern", "item:1*", "--tag", "group"]
        let dryStarted = ContinuousClock.now
        let (dryExit, dryOutput) = try runInvalidator(arguments + ["--dry-run", "--format", "json"])
        let dryRunTook = ContinuousClock.now - dryStarted
        #expect(dryExit == .success, "\(dryOutput)")
        let dryRun = try PurgeJSON(dryOutput)
        #expect(dryRun.keys(try cluster.server(owning: "item:0").endpoint, "delete", "item:0") == 1)
        #expect(dryRun.keysOnAllNodes("pattern", "item:1*") == 11, "item:1 and item:10...19, over every primary")
        #expect(dryRun.keys(try cluster.server(owning: "tag:group").endpoint, "tag", "tag:group") == 12)
        #expect(dryRun.total == 24)
        #expect(try existingKeys(in: cluster, items + members) == 42)

        let purgeStarted = ContinuousClock.now
        let (exit, output) = try runInvalidator(arguments)
        let purgeTook = ContinuousClock.now - purgeStarted
        #expect(exit == .success, "\(output)")
        let left = try items.filter { try cluster.server(owning: $0).call("EXISTS", $0) == "1" }
        #expect(left == items.filter { $0 != "item:0" && !$0.hasPrefix("item:1") })
        #expect(try existingKeys(in: cluster, members + ["tag:group"]) == 0)
        #expect(try existingKeys(in: cluster, ["keep:1"]) == 1)
        report(
            "purge on a 3-primary cluster (a key, a pattern, a tag of 12 members on several primaries)",
            "dry run counted \(dryRun.total ?? 0) keys, removing none, in \(Int((dryRunTook / .milliseconds(1)).rounded())) ms; "
                + "the purge removed exactly those in \(Int((purgeTook / .milliseconds(1)).rounded())) ms (each a whole process run)")
    }

    @Test func patternsWithoutALiteralPrefixAreRefusedUnlessForced() async throws {
        let redis = try await RedisServer.start()
        let scenario = try Scenario()
        let config = try writeConfig(scenario, pool: "{ nodes: [\"\(redis.endpoint)\"] }", events: redis)
        try await redis.seed(["a:x", "b:x"])
        for pattern in ["*", "*:x", "?:x", "[ab]:x"] {
            let (exit, output) = try runInvalidator(["purge", "--config", config, "--pool", "cache", "--pattern", pattern])
            #expect(exit == ChildProcess.Exit(status: 2, bySignal: false), "\(pattern): \(output)")
            #expect(output.contains("no literal prefix"), "\(output)")
        }
        #expect(try redis.keys().count == 2)

        let (forcedExit, forced) = try runInvalidator(["purge", "--config", config, "--pool", "cache", "--pattern", "*:x", "--force"])
        #expect(forcedExit == .success, "\(forced)")
        #expect(try redis.keys().isEmpty)
    }

    @Test func usageErrorsExitTwoAndUnreachableNodesExitOne() async throws {
        let redis = try await RedisServer.start()
        let scenario = try Scenario()
        let config = try writeConfig(scenario, pool: "{ nodes: [\"\(redis.endpoint)\"], connect_timeout: 200ms }", events: redis)
        for arguments in [
            ["--pool", "cache"],
            ["--pool", "nowhere", "--key", "k"],
            ["--pool", "cache", "--key", ""],
        ] {
            let (exit, output) = try runInvalidator(["purge", "--config", config] + arguments)
            #expect(exit == ChildProcess.Exit(status: 2, bySignal: false), "\(arguments): \(output)")
        }

        try await redis.seed(["k:1"])
        redis.kill()
        for dryRun in [false, true] {
            let (exit, output) = try runInvalidator(
                ["purge", "--config", config, "--pool", "cache", "--key", "k:1", "--format", "json"] + (dryRun ? ["--dry-run"] : []))
            #expect(exit == ChildProcess.Exit(status: 1, bySignal: false), "\(output)")
            let result = try PurgeJSON(output)
            #expect(!result.ok)
            #expect(result.errorCode(redis.endpoint, "delete", "k:1") != nil, "\(output)")
        }
    }
}

/// A config whose pool `cache` is `pool`; `events` holds the (unused) source and dead letters.
private func writeConfig(_ scenario: Scenario, pool: String, events: RedisServer) throws -> String {
    try scenario.write("rules.yaml", """
        rules:
          - { name: users, match: { entity: user }, pools: [cache], delete: ["user:{id}"] }
        """)
    return try scenario.write("invalidator.yaml", """
        pools:
          cache: \(pool)
          events: { nodes: ["\(events.endpoint)"] }
        rules: rules.yaml
        retry: { attempts: 2, initial_backoff: 10ms, max_backoff: 50ms }
        dead_letters: { pool: events, stream: "invalidator:dead-letters" }
        sources: { redis_stream: { pool: events, streams: [entity-changes] } }
        """)
}

private func existingKeys(in cluster: RedisCluster, _ keys: [String]) throws -> Int {
    try keys.count { try cluster.server(owning: $0).call("EXISTS", $0) == "1" }
}

/// `purge --format json` output (the JSON object among any log lines).
private struct PurgeJSON {
    let object: [String: Any]

    init(_ output: String) throws {
        let lines = output.split(separator: "\n", omittingEmptySubsequences: false)
        guard let start = lines.firstIndex(of: "{"), let end = lines.lastIndex(of: "}"), start <= end,
              let object = try JSONSerialization.jsonObject(with: Data(lines[start...end].joined(separator: "\n").utf8)) as? [String: Any]
        else { throw TestSupportError("no JSON object in: \(output)") }
        self.object = object
    }

    var dryRun: Bool { object["dry_run"] as? Bool == true }
    var ok: Bool { object["ok"] as? Bool == true }
    var total: Int? { object["keys"] as? Int }

    private func operations(_ node: String?, _ kind: String, _ target: String) -> [[String: Any]] {
        let nodes = (object["nodes"] as? [[String: Any]] ?? []).filter { node == nil || $0["node"] as? String == node }
        return nodes.flatMap { ($0["operations"] as? [[String: Any]]) ?? [] }
            .filter { $0["kind"] as? String == kind && $0["target"] as? String == target }
    }

    func keys(_ node: String, _ kind: String, _ target: String) -> Int? {
        operations(node, kind, target).first?["keys"] as? Int
    }

    func keysOnAllNodes(_ kind: String, _ target: String) -> Int {
        operations(nil, kind, target).reduce(0) { $0 + (($1["keys"] as? Int) ?? 0) }
    }

    func sample(_ node: String, _ kind: String, _ target: String) -> [String] {
        operations(node, kind, target).first?["sample"] as? [String] ?? []
    }

    func errorCode(_ node: String, _ kind: String, _ target: String) -> String? {
        (operations(node, kind, target).first?["error"] as? [String: Any])?["code"] as? String
    }
}
