import Foundation
import InvalidatorCore
import TestSupport
import Testing

@testable import InvalidatorRedis

@Suite struct OperationSemanticsTests {
    @Test func patternOverAHundredThousandKeys() async throws {
        let server = try await RedisServer.start()
        try await server.pipe((0..<100_000).map { ["SET", "big:\($0)", "v"] } + (0..<100).map { ["SET", "other:\($0)", "v"] })
        let pool = try makePool(.single, [server.endpoint])

        let report = await pool.execute([.deletePattern(pattern: "big:*")])

        #expect(report.isSuccess)
        #expect(try server.call("DBSIZE") == "100")
        #expect(try server.keys(matching: "big:*").isEmpty)
    }

    @Test func aHugePatternDoesNotStarveOtherWork() async throws {
        let server = try await RedisServer.start()
        try await server.pipe((0..<200_000).map { ["SET", "big:\($0)", "v"] } + [["SET", "urgent", "v"]])
        let pool = try makePool(.single, [server.endpoint], tuning: ExecutionTuning(scanCount: 50, scanIterationsPerRound: 4))

        let pattern = Task { await pool.execute([.deletePattern(pattern: "big:*")]) }
        while try Int(server.call("DBSIZE"))! > 199_000 { try await Task.sleep(for: .milliseconds(2)) }
        let urgent = await pool.execute([.delete(key: "urgent")])

        #expect(urgent.isSuccess)
        #expect(try server.call("EXISTS", "urgent") == "0")
        #expect(try Int(server.call("DBSIZE"))! > 0, "the pattern was still running when the delete finished")
        #expect(await pattern.value.isSuccess)
        #expect(try server.call("DBSIZE") == "0")
    }

    @Test func globEscapedPatternOnlyDeletesTheLiteralKey() async throws {
        let server = try await RedisServer.start()
        try await server.seed(["user:*:profile", "user:1:profile", "user:?:profile", "user:[ab]:profile", "user:a:profile"])
        let pool = try makePool(.single, [server.endpoint])

        let report = await pool.execute([
            .deletePattern(pattern: #"user:\*:*"#),
            .deletePattern(pattern: #"user:\[ab\]:*"#),
        ])

        #expect(report.isSuccess)
        #expect(try server.keys() == ["user:1:profile", "user:?:profile", "user:a:profile"])
    }

    @Test func membersAddedDuringATagPurgeSurvive() async throws {
        let server = try await RedisServer.start()
        let members = (0..<5_000).map { "member:\($0)" }
        try await server.seed(members)
        try await server.pipe([["SADD", "tag:hot"] + members])
        // Small SSCAN pages keep the purge running while members are added.
        let pool = try makePool(.single, [server.endpoint], tuning: ExecutionTuning(scanCount: 10))

        let purge = Task { await pool.execute([.purgeTag(setKey: "tag:hot")]) }
        while try server.call("EXISTS", "tag:hot") == "1" { try await Task.sleep(for: .milliseconds(1)) }
        var added: [String] = []
        for index in 0..<20 {
            try server.call("SET", "late:\(index)", "v")
            try server.call("SADD", "tag:hot", "late:\(index)")
            added.append("late:\(index)")
        }
        let report = await purge.value

        #expect(report.isSuccess)
        #expect(try server.existing(members).isEmpty)
        #expect(try server.existing(added) == added)
        let liveMembers = Set(try server.call("SMEMBERS", "tag:hot").split(separator: "\n").map(String.init))
        #expect(liveMembers == Set(added))
        #expect(try server.keys(matching: "*purging*").isEmpty)
    }

    @Test func purgingAMissingTagSucceeds() async throws {
        let server = try await RedisServer.start()
        let pool = try makePool(.single, [server.endpoint])
        let report = await pool.execute([.purgeTag(setKey: "tag:none")])
        #expect(report.isSuccess)
        #expect(report.nodes.first?.succeeded == [.purgeTag(setKey: "tag:none")])
    }

    @Test func expireOnlyEverShortensTTLs() async throws {
        let server = try await RedisServer.start()
        try await server.seed(["no-ttl", "short-ttl", "long-ttl"])
        try server.call("PEXPIRE", "short-ttl", "30000")
        try server.call("PEXPIRE", "long-ttl", "600000")
        let pool = try makePool(.single, [server.endpoint])

        let report = await pool.execute(["no-ttl", "short-ttl", "long-ttl", "missing"].map {
            .expire(key: $0, ttlMilliseconds: 60_000)
        })

        #expect(report.isSuccess)
        #expect((1...60_000).contains(Int(try server.call("PTTL", "no-ttl"))!))
        #expect((1...30_000).contains(Int(try server.call("PTTL", "short-ttl"))!))
        #expect((1...60_000).contains(Int(try server.call("PTTL", "long-ttl"))!))
        #expect(try server.call("EXISTS", "missing") == "0")
    }

    @Test func aRepeatedBumpCountsOnceAndRepeatedDeletesAreHarmless() async throws {
        let server = try await RedisServer.start()
        try await server.seed(["a", "b"])
        let pool = try makePool(.single, [server.endpoint])

        let report = await pool.execute([.bump(key: "v"), .delete(key: "a"), .bump(key: "v"), .delete(key: "a"), .delete(key: "b")])

        #expect(report.isSuccess)
        #expect(try server.call("GET", "v") == "1")
        #expect(try server.call("EXISTS", "a") == "0")
        #expect(try server.call("EXISTS", "b") == "0")
    }

    @Test func identicalPrecomputeJobsAreEnqueuedOncePerWindow() async throws {
        let server = try await RedisServer.start()
        let pool = try makePool(.single, [server.endpoint], tuning: ExecutionTuning(precomputeDeduplicationWindow: .seconds(60)))
        func job(_ id: String, event: String) -> CacheOperation {
            .precompute(PrecomputeJob(stream: "jobs", job: "warm", args: [.init(name: "id", value: id)], eventID: event, occurredAt: nil))
        }

        let first = await pool.execute([job("1", event: "e-1"), job("2", event: "e-1")])
        let second = await pool.execute([job("1", event: "e-1"), job("3", event: "e-2")])

        #expect(first.isSuccess && second.isSuccess)
        #expect(second.deduplicated == [job("1", event: "e-1")])
        #expect(try server.call("XLEN", "jobs") == "3")
    }

    @Test func wrongTypeIsFinalAndOtherOperationsStillApply() async throws {
        let server = try await RedisServer.start()
        try await server.seed(["plain", "gone"])
        let pool = try makePool(.single, [server.endpoint])

        let report = await pool.execute([.purgeTag(setKey: "plain"), .delete(key: "gone"), .bump(key: "plain")])

        #expect(try server.call("EXISTS", "gone") == "0")
        let failures = report.failures
        #expect(Set(failures.map(\.operation)) == [.purgeTag(setKey: "plain"), .bump(key: "plain")])
        #expect(failures.allSatisfy { $0.attempts == 1 && !$0.error.isRetriable })
        #expect(failures.contains { $0.error.code == .wrongType })
    }
}
