import InvalidatorCore
import TestSupport
import Testing

@testable import InvalidatorRedis

/// All the patterns of a call share one SCAN walk per node, and delete exactly what
/// Redis's own matcher would have for each pattern alone.
@Suite(.timeLimit(.minutes(3))) struct PatternWalkTests {
    /// The patterns of a bulk event, planned as the worker plans them.
    static func bulkEventPatterns(ids: [String]) throws -> [CacheOperation] {
        let rules = try RulesLoader.load(yaml: """
            rules:
              - name: sessions
                match: { entity: user }
                patterns: ["session:{tenant}:{id}:*"]
            """, file: "rules.yaml")
        let plan = Planner(rules: rules, pools: [PoolTarget(name: "test")])
            .plan(ChangeEvent(entity: "user", ids: ids, op: .update, tenant: "acme"))
        return plan.pools.flatMap { $0.operations.map(\.operation) }
    }

    @Test func aTwoThousandIdEventOverTwoHundredThousandKeysIsOneWalk() async throws {
        let server = try await RedisServer.start()
        let sessions = (0..<2_000).flatMap { id in (0..<50).map { "session:acme:\(id):\($0)" } }
        let globKeys = ["session:acme:*:1", "session:acme:[1]:x", "session:acme:1?:x", #"session:acme:\:x"#]
        // Each shares a literal prefix with the patterns but none matches: another tenant,
        // an id past the event's, an id without its colon, a longer id.
        let kept = (0..<20_400).flatMap { n in
            ["session:other:\(n % 2_000):\(n)", "sessions:acme:\(n % 2_000):\(n)", "session:acme:\(2_000 + n):x",
             "session:acme:\(n)", "session:acme:\(n % 2_000)0000:\(n)"]
        } + ["session:acme:x:1", "session:acme:1x:1"]
        try await server.seed(sessions + globKeys + kept)
        let keysBefore = try #require(Int(try server.call("DBSIZE")))
        #expect(keysBefore > 200_000)
        // Ids with glob characters plan escaped patterns that match only those literal ids.
        let patterns = try Self.bulkEventPatterns(ids: (0..<2_000).map(String.init) + ["*", "[1]"])
        #expect(patterns.count == 2_002)
        let pool = try makePool(.single, [server.endpoint])

        let report = await pool.execute(patterns)

        #expect(report.isSuccess, "\(report.failures.prefix(3))")
        let node = try #require(report.result(for: endpoint(server.endpoint)))
        #expect(Set(node.succeeded) == Set(patterns))
        #expect(node.removedKeys.reduce(0, +) == sessions.count + 2)
        let walk = try #require(node.patternWalk)
        // One pass, narrowed by MATCH to the common prefix `session:acme:`: not 2,002 passes.
        let underCommonPrefix = sessions.count + globKeys.count + kept.filter { $0.hasPrefix("session:acme:") }.count
        #expect(walk.keysScanned >= underCommonPrefix && walk.keysScanned <= keysBefore, "\(walk)")
        #expect(try server.keys() == Set(kept + ["session:acme:1?:x", #"session:acme:\:x"#]))
    }

    @Test func patternsWithoutACommonPrefixDeleteWhatRedisMatchesForEach() async throws {
        let server = try await RedisServer.start()
        let keys = ["a:1", "a:2", "b:1", "x:b", "c1:x", "cc:x", "c:x", "a*", "[a]", "k", "ka", #"q\"#]
        try await server.seed(keys)
        let patterns = ["a:*", "*:b", "c?:x", #"a\*"#, "[[]a]", "k", #"q\"#]
        var expected = Set<String>()
        for pattern in patterns { expected.formUnion(try server.keys(matching: pattern)) }
        #expect(expected.count == 9)
        let pool = try makePool(.single, [server.endpoint], tuning: ExecutionTuning(scanCount: 3, scanIterationsPerRound: 2))

        let report = await pool.execute(patterns.map { .deletePattern(pattern: $0) })

        #expect(report.isSuccess)
        #expect(try server.keys() == Set(keys).subtracting(expected))
        #expect(report.result(for: endpoint(server.endpoint))?.patternWalk?.keysScanned ?? 0 >= keys.count)
    }

    @Test func aKeyMatchingSeveralPatternsCountsOnceForTheFirst() async throws {
        let server = try await RedisServer.start()
        try await server.seed(["a:1", "a:2", "a:10"])
        let pool = try makePool(.single, [server.endpoint])

        let report = await pool.execute([.deletePattern(pattern: "a:*"), .deletePattern(pattern: "a:1*")])

        let removals = Dictionary(uniqueKeysWithValues: try #require(report.result(for: endpoint(server.endpoint))).removals.map { ($0, $1) })
        #expect(removals == [.deletePattern(pattern: "a:*"): 3, .deletePattern(pattern: "a:1*"): 0])
        #expect(try server.keys().isEmpty)
    }

    @Test func aDryRunCountsEveryPatternAsScanMatchDoesInOneWalk() async throws {
        let server = try await RedisServer.start()
        let keys = (0..<3_000).map { "item:\($0 % 30):\($0)" } + (0..<1_000).map { "page:\($0 % 7):\($0)" } + ["a*", "[a]", "k"]
        try await server.seed(keys)
        // No common prefix, overlapping patterns: every key is tested against all of them.
        let patterns = (0..<30).map { "item:\($0):*" } + (0..<7).map { "page:\($0):*" }
            + ["item:1*", "*:1", "?age:*:1?", #"a\*"#, "[[]a]", "k", "none:*"]
        let pool = try makePool(.single, [server.endpoint], tuning: ExecutionTuning(scanCount: 100))
        let scansBefore = try server.scanCalls()

        let estimate = await pool.estimateRemovals(patterns.map { .deletePattern(pattern: $0) })

        let scans = try server.scanCalls() - scansBefore
        #expect(estimate.isSuccess)
        #expect(estimate.targets.map(\.operation) == patterns.map { .deletePattern(pattern: $0) }, "in the order given")
        for (pattern, target) in zip(patterns, estimate.targets) {
            #expect(target.keys == (try server.keys(matching: pattern)).count, "'\(pattern)'")
            #expect(target.sample.count == min(target.keys, 10))
        }
        // One walk of 4,003 keys 100 at a time: a walk per pattern would take 44 times as many calls.
        var cursor = "0"
        var oneWalk = 0
        repeat {
            cursor = String(try server.call("SCAN", cursor, "COUNT", "100").prefix { $0 != "\n" })
            oneWalk += 1
        } while cursor != "0"
        #expect(abs(scans - oneWalk) <= 2, "\(scans) SCAN calls, one walk takes \(oneWalk)")
        #expect(try server.keys().count == keys.count, "nothing removed")
    }

    @Test func theEmptyKeyIsMatchedAsScanMatchDoes() async throws {
        let server = try await RedisServer.start()
        try server.call("SET", "", "x")
        try await server.seed(["a", "ab", "b"])
        let keys: [[UInt8]] = [[], Array("a".utf8), Array("ab".utf8), Array("b".utf8)]
        for pattern in ["*", "**", "?*", "[a]*", "", "a*"] {
            var cursor: [UInt8] = Array("0".utf8)
            var scanned = Set<[UInt8]>()
            repeat {
                let page = try server.call(bytes: [Array("SCAN".utf8), cursor, Array("MATCH".utf8), Array(pattern.utf8)])
                cursor = page.first ?? Array("0".utf8)
                scanned.formUnion(page.dropFirst())
            } while cursor != Array("0".utf8)
            let set = PatternSet([pattern])
            #expect(Set(keys.filter { !set.matching($0).isEmpty }) == scanned, "'\(pattern)'")
        }

        // The walk: `**` leaves the empty key, as SCAN MATCH ** does; `*` removes it.
        let pool = try makePool(.single, [server.endpoint])
        #expect(await pool.execute([.deletePattern(pattern: "**")]).isSuccess)
        #expect(try server.call(bytes: [Array("EXISTS".utf8), []]) == [Array("1".utf8)])
        #expect(try server.call("DBSIZE") == "1")
        #expect(await pool.execute([.deletePattern(pattern: "*")]).isSuccess)
        #expect(try server.call("DBSIZE") == "0")
    }

    /// Redis's own matcher is the reference: for random patterns over glob syntax and
    /// keys holding glob characters, the set answers what `SCAN MATCH` does for each.
    @Test func thePatternSetAgreesWithRedissMatcher() async throws {
        let server = try await RedisServer.start()
        let alphabet = ["a", ":", "*", "?", "[", "]", "\\"]
        var keys = alphabet
        for _ in 0..<2 { keys += keys.flatMap { key in alphabet.map { key + $0 } } }
        try await server.seed(Array(Set(keys)))
        var generator = SplitMix(seed: 19)
        let syntax = alphabet + ["b", "^", "-", "a", "a"]
        let patterns = (0..<300).map { _ in
            (0..<Int.random(in: 1...5, using: &generator)).map { _ in syntax.randomElement(using: &generator)! }.joined()
        }
        let set = PatternSet(patterns)
        var matchedByPattern = [Set<String>](repeating: [], count: patterns.count)
        for key in Set(keys) {
            for position in set.matching(Array(key.utf8)) { matchedByPattern[position].insert(key) }
        }
        for (position, pattern) in patterns.enumerated() {
            #expect(matchedByPattern[position] == (try server.keys(matching: pattern)), "'\(pattern)'")
        }
    }

    @Test func aMixedBatchOnAClusterWalksOncePerPrimary() async throws {
        let cluster = try await RedisCluster.start(primaries: 3)
        let sessions = (0..<100).flatMap { id in (0..<10).map { "session:acme:\(id):\($0)" } }
        let others = (0..<300).map { "session:other:\($0 % 100):\($0)" }
        let pages = (0..<100).map { "page:\($0)" }
        let members = (0..<50).map { "product:\($0)" }
        for key in sessions + others + pages + members { try cluster.server(owning: key).call("SET", key, "v") }
        try cluster.server(owning: "tag:catalog").call(["SADD", "tag:catalog"] + members)
        let patterns = try Self.bulkEventPatterns(ids: (0..<100).map(String.init))
        let deletes = pages.map { CacheOperation.delete(key: $0) }
        let pool = try makePool(.cluster, [cluster.endpoints[0]], tuning: ExecutionTuning(scanCount: 50))

        let report = await pool.execute(patterns + deletes + [.purgeTag(setKey: "tag:catalog")])

        #expect(report.isSuccess, "\(report.failures.prefix(3))")
        var removedByPatterns = 0
        for primary in try cluster.primaries() {
            let node = try #require(report.result(for: endpoint(primary.endpoint)))
            // Every primary ran every pattern, in one walk of its own keys.
            #expect(Set(patterns).isSubset(of: node.succeeded))
            let walk = try #require(node.patternWalk)
            #expect(walk.keysScanned <= (try #require(Int(try primary.call("DBSIZE")))) + sessions.count)
            removedByPatterns += node.removals.filter { $0.0.kind == .pattern }.map(\.1).reduce(0, +)
            #expect(try primary.keys().allSatisfy { $0.hasPrefix("session:other:") })
        }
        #expect(removedByPatterns == sessions.count)
        #expect(try cluster.servers.reduce(0) { $0 + (try $1.keys(matching: "session:other:*").count) } == others.count)
    }

    @Test func aNodeKilledMidWalkFailsEveryPatternOfTheWalk() async throws {
        let server = try await RedisServer.start()
        try await server.seed((0..<30_000).map { "page:\($0 % 10):\($0)" })
        let pool = try makePool(
            .single, [server.endpoint],
            retry: RetryPolicy(attempts: 8, initialBackoff: .milliseconds(5), maxBackoff: .milliseconds(20)),
            circuitBreaker: CircuitBreakerPolicy(failureThreshold: 3, coolDown: .seconds(30)),
            tuning: ExecutionTuning(scanCount: 20)
        )
        let patterns = (0..<10).map { CacheOperation.deletePattern(pattern: "page:\($0):*") }

        let run = Task { await pool.execute(patterns) }
        while try Int(server.call("DBSIZE"))! > 29_000 { try await Task.sleep(for: .milliseconds(1)) }
        server.kill()
        let report = await run.value

        let node = try #require(report.result(for: endpoint(server.endpoint)))
        #expect(node.succeeded.isEmpty)
        #expect(Set(node.failed.map(\.operation)) == Set(patterns))
        #expect(node.failed.allSatisfy { $0.error.code == .circuitOpen })
        #expect(node.failed.map(\.removedKeys).reduce(0, +) >= 1_000, "keys unlinked before the kill stay counted")
        #expect(try #require(node.patternWalk).keysScanned >= 1_000)
    }
}

extension RedisServer {
    /// How many SCAN calls the server has answered (`INFO commandstats`).
    func scanCalls() throws -> Int {
        let stats = try call("INFO", "commandstats")
        guard let line = stats.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("cmdstat_scan:") }) else { return 0 }
        let calls = line.split(separator: ",").first { $0.hasPrefix("cmdstat_scan:calls=") }?.dropFirst("cmdstat_scan:calls=".count)
        return calls.flatMap { Int($0) } ?? 0
    }
}
