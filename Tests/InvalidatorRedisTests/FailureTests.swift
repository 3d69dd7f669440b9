import Foundation
import InvalidatorCore
import TestSupport
import Testing

@testable import InvalidatorRedis

@Suite struct FailureTests {
    @Test func noPermissionIsFinalAndNotRetried() async throws {
        let server = try await RedisServer.start()
        try server.call("ACL", "SETUSER", "reader", "on", ">reader-pass", "~*", "+@all", "-unlink")
        try server.call("ACL", "SETUSER", "writer", "on", ">writer-pass", "~*", "+@all")
        try await server.seed(["a", "b"])

        let denied = try makePool(.single, [server.endpoint], username: "reader", password: "reader-pass")
        let deniedReport = await denied.execute([.delete(key: "a"), .bump(key: "counter")])
        let failure = try #require(deniedReport.failures.first)
        #expect(deniedReport.failures.count == 1)
        #expect(failure.operation == .delete(key: "a"))
        #expect(failure.error.code == .noPerm)
        #expect(!failure.error.isRetriable)
        #expect(failure.attempts == 1)
        #expect(deniedReport.result(for: endpoint(server.endpoint))?.succeeded == [.bump(key: "counter")])
        #expect(try server.call("EXISTS", "a") == "1")

        let allowed = try makePool(.single, [server.endpoint], username: "writer", password: "writer-pass")
        #expect(await allowed.execute([.delete(key: "a")]).isSuccess)
        #expect(try server.call("EXISTS", "a") == "0")

        let wrongPassword = try makePool(.single, [server.endpoint], username: "writer", password: "not-the-password")
        let rejected = try #require(await wrongPassword.execute([.delete(key: "b")]).failures.first)
        #expect(rejected.error.code == .wrongPass)
        #expect(rejected.attempts == 1)
        #expect(!rejected.error.message.contains("not-the-password"))
    }

    @Test func aTagWhoseMembersCannotBeDeletedKeepsThemForTheNextPurge() async throws {
        let server = try await RedisServer.start()
        // May touch tag sets and their snapshots, but not the members.
        try server.call("ACL", "SETUSER", "tagger", "on", ">tagger-pass", "~tag:*", "~{tag:*", "+@all")
        let members = (0..<50).map { "product:\($0)" }
        try await server.seed(members + ["product:new"])
        try server.call(["SADD", "tag:catalog"] + members)
        let denied = try makePool(.single, [server.endpoint], username: "tagger", password: "tagger-pass")

        let report = await denied.execute([.purgeTag(setKey: "tag:catalog")])

        let failure = try #require(report.failures.first)
        #expect(failure.error.code == .noPerm)
        #expect(failure.attempts == 1)
        #expect(try server.existing(members) == members)
        #expect(try server.call("SCARD", Commands.tagPurgeKeys(forTagSet: "tag:catalog").snapshot) == "50")

        // The next purge (here with the right to delete) takes them along with new members.
        try server.call("SADD", "tag:catalog", "product:new")
        let allowed = try makePool(.single, [server.endpoint])
        #expect(await allowed.execute([.purgeTag(setKey: "tag:catalog")]).isSuccess)
        #expect(try server.keys().isEmpty)
    }

    @Test func aNodeKilledMidRunFailsAloneAndItsCircuitOpens() async throws {
        let survivor = try await RedisServer.start()
        let victim = try await RedisServer.start()
        let keys = (0..<30_000).map { "page:\($0)" }
        for server in [survivor, victim] { try await server.seed(keys + ["user:1"]) }
        let pool = try makePool(
            .replicated, [survivor.endpoint, victim.endpoint],
            retry: RetryPolicy(attempts: 8, initialBackoff: .milliseconds(5), maxBackoff: .milliseconds(20)),
            circuitBreaker: CircuitBreakerPolicy(failureThreshold: 3, coolDown: .seconds(30)),
            tuning: ExecutionTuning(scanCount: 20)
        )

        let run = Task { await pool.execute([.deletePattern(pattern: "page:*"), .delete(key: "user:1")]) }
        while try Int(victim.call("DBSIZE"))! > 29_000 { try await Task.sleep(for: .milliseconds(1)) }
        victim.kill()
        let report = await run.value

        #expect(report.result(for: endpoint(survivor.endpoint))?.failed.isEmpty == true)
        #expect(try survivor.call("DBSIZE") == "0")
        let failures = try #require(report.result(for: endpoint(victim.endpoint))?.failed)
        #expect(failures.map(\.operation) == [.deletePattern(pattern: "page:*")])
        #expect(failures[0].error.code == .circuitOpen)
        #expect(failures[0].attempts == 3, "retried until the circuit opened")

        // Open circuit: the dead node fails at once, the live one still works.
        let started = ContinuousClock.now
        let next = await pool.execute([.delete(key: "other")])
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(next.result(for: endpoint(victim.endpoint))?.failed.first?.attempts == 0)
        #expect(next.result(for: endpoint(survivor.endpoint))?.succeeded == [.delete(key: "other")])
    }

    @Test func aRestartedNodeIsReconnectedAndLaterOperationsSucceed() async throws {
        let server = try await RedisServer.start()
        let pool = try makePool(.single, [server.endpoint])
        #expect(await pool.execute([.delete(key: "warm-up")]).isSuccess)

        server.kill()
        let whileDown = await pool.execute([.delete(key: "a")])
        #expect(whileDown.failures.first?.error.isRetriable == true)

        try await server.restart()
        try await server.seed(["a"])
        let report = await pool.execute([.delete(key: "a")])
        #expect(report.isSuccess, "\(report.failures)")
        #expect(try server.call("EXISTS", "a") == "0")
    }

    @Test func aHalfOpenProbeClosesTheCircuitOnceTheNodeIsBack() async throws {
        let server = try await RedisServer.start()
        let pool = try makePool(
            .single, [server.endpoint],
            // A cool-down long enough that retries under a loaded machine still see the circuit open.
            circuitBreaker: CircuitBreakerPolicy(failureThreshold: 2, coolDown: .seconds(2))
        )
        server.kill()
        let failed = await pool.execute([.delete(key: "a")])
        #expect(failed.failures.first?.error.code == .circuitOpen)

        try await server.restart()
        try await Task.sleep(for: .milliseconds(2100))
        #expect(await pool.execute([.delete(key: "a")]).isSuccess)
    }
}
