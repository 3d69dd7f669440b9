import Foundation
import InvalidatorCore
import InvalidatorRedis
import Logging
import TestSupport

/// One bulk event's patterns (`session:{tenant}:{id}:*` for every id) through a pool,
/// next to `redis-cli --scan --pattern '*' | wc -l` over the same keyspace in the same
/// run: one plain SCAN-and-count pass, the floor for anything that has to look at every key.
/// redis-cli pages with its default COUNT (10 keys a call), so the same pass paged as the
/// pool pages (COUNT 1000, one connection) is printed too.
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

        var cliScans: [Duration] = []
        var pagedScans: [Duration] = []
        var walks: [Duration] = []
        for _ in 0..<rounds {
            try server.call("FLUSHALL")
            try await server.seed(matching + kept)
            let (cliCount, cliScan) = try timed { try countKeysWithRedisCLI(server) }
            precondition(cliCount == matching.count + kept.count, "redis-cli counted \(cliCount) keys")
            cliScans.append(cliScan)

            let pool = try makePool(server)
            let clock = ContinuousClock()
            let scanStarted = clock.now
            let pagedCount = try await countKeysWithSCAN(pool, server)
            pagedScans.append(clock.now - scanStarted)
            precondition(pagedCount >= matching.count + kept.count, "SCAN counted \(pagedCount) keys")
            let started = clock.now
            let report = await pool.execute(patterns)
            walks.append(clock.now - started)
            await pool.close()
            precondition(report.isSuccess, "patterns failed: \(report.failures.first.map { "\($0.error)" } ?? "")")
            let remaining = try server.keys()
            precondition(remaining == Set(kept), "the walk left matching keys or removed others")
        }
        let walk = median(walks)
        let cliScan = median(cliScans)
        let pagedScan = median(pagedScans)
        print(String(format: "  redis-cli --scan --pattern '*' | wc -l        %8.3f s (median)", cliScan.seconds))
        print(String(format: "  SCAN COUNT 1000 and count, one connection     %8.3f s (median)", pagedScan.seconds))
        print(String(format: "  invalidator pool, the event's patterns        %8.3f s (median)", walk.seconds))
        print(String(format: "  patterns / redis-cli pass: %5.2fx (target <= 3x); patterns / COUNT 1000 pass: %5.2fx",
                     walk / cliScan, walk / pagedScan))
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

    private static func countKeysWithRedisCLI(_ server: RedisServer) throws -> Int {
        let output = try ChildProcess.run("sh", ["-c", "redis-cli -p \(server.port) --scan --pattern '*' | wc -l"])
        guard let count = Int(output.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw TestSupportError("redis-cli --scan printed \(output.standardOutput)")
        }
        return count
    }

    /// Keys counted by paging SCAN to the end on a connection of the pool's own (a key SCAN
    /// returns twice counts twice).
    private static func countKeysWithSCAN(_ pool: RedisPool, _ server: RedisServer) async throws -> Int {
        let connection = pool.dedicatedConnection(to: RedisEndpoint(host: "127.0.0.1", port: server.port))
        var cursor = "0"
        var count = 0
        repeat {
            let reply = try await connection.send(["SCAN", cursor, "COUNT", "1000"])
            guard let parts = reply.array, parts.count == 2, let next = parts[0].string, let keys = parts[1].array else {
                throw TestSupportError("unexpected SCAN reply: \(reply)")
            }
            count += keys.count
            cursor = next
        } while cursor != "0"
        await connection.close()
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
