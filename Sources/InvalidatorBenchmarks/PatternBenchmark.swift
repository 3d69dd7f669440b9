import Foundation
import InvalidatorCore
import InvalidatorRedis
import Logging
import TestSupport

/// One bulk event's patterns (`session:{tenant}:{id}:*` for every id) through a pool,
/// next to `redis-cli --scan --pattern '*' | wc -l` over the same keyspace in the same
/// run: one plain SCAN-and-count pass, the floor for anything that has to look at every key.
enum PatternBenchmark {
    static func run(ids: Int, keysPerID: Int, rounds: Int) async throws {
        let server = try await RedisServer.start()
        let patterns = try plannedPatterns(ids: ids)
        let matching = (0..<ids).flatMap { id in (0..<keysPerID).map { "session:acme:\(id):\($0)" } }
        // As many keys again that the patterns must keep, most with the same leading text:
        // another tenant, a near-miss prefix, an id with a suffix, ids past the event's.
        let kept = (0..<ids).flatMap { id in
            (0..<keysPerID).map { n in
                switch n % 4 {
                case 0: "session:other:\(id):\(n)"
                case 1: "sessions:acme:\(id):\(n)"
                case 2: "session:acme:\(id)x:\(n)"
                default: "session:acme:\(ids + id):\(n)"
                }
            }
        }
        print("pattern benchmark: \(patterns.count) patterns from one event over \(matching.count + kept.count) keys, \(rounds) rounds")

        // redis-cli's own SCAN COUNT (10), as the issue measures it, and the pool's (1000).
        let references = ["", " --count 1000"]
        var scans = references.map { _ in [Duration]() }
        var walks: [Duration] = []
        for _ in 0..<rounds {
            try server.call("FLUSHALL")
            try await server.seed(matching + kept)
            for (index, options) in references.enumerated() {
                let (count, scan) = try timed { try countKeysWithRedisCLI(server, options: options) }
                precondition(count == matching.count + kept.count, "redis-cli counted \(count) keys")
                scans[index].append(scan)
            }

            let pool = try makePool(server)
            let clock = ContinuousClock()
            let started = clock.now
            let report = await pool.execute(patterns)
            walks.append(clock.now - started)
            await pool.close()
            precondition(report.isSuccess, "patterns failed: \(report.failures.first.map { "\($0.error)" } ?? "")")
            let remaining = try server.keys()
            precondition(remaining == Set(kept), "the walk left matching keys or removed others")
        }
        let walk = median(walks)
        for (options, durations) in zip(references, scans) {
            let label = "redis-cli --scan --pattern '*'\(options) | wc -l".padding(toLength: 52, withPad: " ", startingAt: 0)
            print("  " + label + String(format: "%8.3f s (median)", median(durations).seconds))
        }
        let label = "invalidator pool, the event's patterns".padding(toLength: 52, withPad: " ", startingAt: 0)
        print("  " + label + String(format: "%8.3f s (median)", walk.seconds))
        for (options, durations) in zip(references, scans) {
            print(String(format: "  ratio to redis-cli%@: %5.2fx (target <= 3x)", options, walk / median(durations)))
        }
    }

    /// The patterns the worker plans for an event carrying every id.
    private static func plannedPatterns(ids: Int) throws -> [CacheOperation] {
        let rules = try RulesLoader.load(yaml: """
            rules:
              - name: sessions
                match: { entity: user }
                patterns: ["session:{tenant}:{id}:*"]
            """, file: "rules.yaml")
        let event = ChangeEvent(entity: "user", ids: (0..<ids).map(String.init), op: .update, tenant: "acme")
        let plan = Planner(rules: rules, pools: [PoolTarget(name: "bench")]).plan(event)
        let operations = plan.pools.flatMap { $0.operations.map(\.operation) }
        precondition(operations.count == ids, "planned \(operations.count) operations for \(ids) ids")
        return operations
    }

    private static func countKeysWithRedisCLI(_ server: RedisServer, options: String) throws -> Int {
        let output = try ChildProcess.run("sh", ["-c", "redis-cli -p \(server.port) --scan --pattern '*'\(options) | wc -l"])
        guard let count = Int(output.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw TestSupportError("redis-cli --scan printed \(output.standardOutput)")
        }
        return count
    }

    private static func makePool(_ server: RedisServer) throws -> RedisPool {
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        let configuration = RedisPoolConfiguration(
            name: "bench", mode: .single, nodes: [RedisEndpoint(host: "127.0.0.1", port: server.port)])
        return RedisPool(configuration: configuration, logger: logger)
    }

    private static func timed<Result>(_ body: () throws -> Result) rethrows -> (Result, Duration) {
        let clock = ContinuousClock()
        let started = clock.now
        let result = try body()
        return (result, clock.now - started)
    }

    private static func median(_ durations: [Duration]) -> Duration {
        durations.sorted()[durations.count / 2]
    }
}
