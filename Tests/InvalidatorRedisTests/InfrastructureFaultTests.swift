import InvalidatorCore
import TestSupport
import Testing

@testable import InvalidatorRedis

/// Servers that change under the pool: credentials rotated while a node was down,
/// a primary turned replica, a server refusing connections, a cluster failover
/// and a reshard. The pool must recover from each without a restart.
@Suite(.timeLimit(.minutes(2))) struct InfrastructureFaultTests {
    /// Retries that outlast a few hundred milliseconds of trouble by far: about 30 s.
    let patientRetry = RetryPolicy(attempts: 600, initialBackoff: .milliseconds(20), maxBackoff: .milliseconds(50))

    @Test func aHalfOpenProbeRefusedByTheServerReopensTheCircuitInsteadOfStickingHalfOpen() async throws {
        let server = try await RedisServer.start()
        try server.call("CONFIG", "SET", "requirepass", "secret")
        let pool = try makePool(
            .single, [server.endpoint], password: "secret",
            circuitBreaker: CircuitBreakerPolicy(failureThreshold: 1, coolDown: .seconds(2)))
        #expect(await pool.execute([.delete(key: "warm-up")]).isSuccess)

        server.kill()
        #expect(await pool.execute([.delete(key: "a")]).failures.first?.error.code == .circuitOpen)
        // Back with a rotated password: the probe's handshake gets WRONGPASS, an error reply.
        try await server.restart()
        try server.call("CONFIG", "SET", "requirepass", "rotated")
        try await Task.sleep(for: .milliseconds(2100))
        let refused = await pool.execute([.delete(key: "a")])
        #expect(refused.failures.first?.error.code == .wrongPass, "\(refused.failures)")
        #expect(await pool.ping().values.first??.code != nil, "not ready while the password is wrong")

        // The password is put right: the next probe closes the circuit (it used to stay half-open for good).
        try server.call("CONFIG", "SET", "requirepass", "secret")
        try server.call("SET", "a", "v")
        #expect(try await eventually { await pool.execute([.delete(key: "a")]).isSuccess })
        #expect(try server.call("EXISTS", "a") == "0")
        #expect(await pool.ping().values.allSatisfy { $0 == nil })
    }

    @Test func readinessGoesThroughTheCircuitBreaker() async throws {
        let server = try await RedisServer.start()
        let pool = try makePool(.single, [server.endpoint], circuitBreaker: CircuitBreakerPolicy(failureThreshold: 1, coolDown: .seconds(30)))
        server.kill()
        _ = await pool.execute([.delete(key: "a")])
        try await server.restart()
        // The node answers again, but operations would still fail fast: not ready until the circuit closes.
        #expect(await pool.ping().values.first??.code == .circuitOpen)
    }

    @Test func aFormerPrimaryAnsweringReadonlyIsRetriedUntilItIsPrimaryAgain() async throws {
        let (node, other) = try await (RedisServer.start(), RedisServer.start())
        try node.call("SET", "user:1", "v")
        let pool = try makePool(.single, [node.endpoint], retry: patientRetry)
        #expect(await pool.execute([.delete(key: "warm-up")]).isSuccess)
        try node.call("REPLICAOF", "127.0.0.1", String(other.port))
        try await Task.sleep(for: .milliseconds(100))

        let run = Task { await pool.execute([.delete(key: "user:2")]) }
        try await Task.sleep(for: .milliseconds(300))
        try node.call("REPLICAOF", "NO", "ONE")
        let report = await run.value

        #expect(report.isSuccess, "\(report.failures)")
        #expect(report.result(for: endpoint(node.endpoint))?.succeeded == [.delete(key: "user:2")])
    }

    @Test func aServerAtItsClientLimitIsRetriedNotDeadLettered() async throws {
        let server = try await RedisServer.start()
        try server.call("SET", "user:1", "v")
        // The test's own connection is the one client allowed.
        try server.call("CONFIG", "SET", "maxclients", "1")
        let pool = try makePool(.single, [server.endpoint], retry: patientRetry)

        let run = Task { await pool.execute([.delete(key: "user:1")]) }
        try await Task.sleep(for: .milliseconds(300))
        try server.call("CONFIG", "SET", "maxclients", "100")
        let report = await run.value

        #expect(report.isSuccess, "\(report.failures)")
        #expect(try server.call("EXISTS", "user:1") == "0")
    }

    @Test func aKilledPrimarysSlotsAreServedByItsPromotedReplicaWithoutARestart() async throws {
        let cluster = try await RedisCluster.start(primaries: 3, replicasPerPrimary: 1)
        // No periodic refresh within the test: the failures alone must lead to the new owner.
        let pool = try makePool(
            .cluster, [cluster.endpoints[0]],
            circuitBreaker: CircuitBreakerPolicy(failureThreshold: 2, coolDown: .milliseconds(300)),
            tuning: ExecutionTuning(topologyRefreshInterval: .seconds(600)))
        #expect(await pool.execute([.delete(key: "warm-up")]).isSuccess)
        let victim = try cluster.server(owning: "user:1")
        let replica = try #require(try cluster.replicas(of: victim).first)

        victim.kill()
        // Promoted, and known to be by every live primary (the map is read from them).
        let replicaID = try replica.call("CLUSTER", "MYID")
        #expect(try await eventually(timeout: .seconds(30)) {
            try cluster.primaries().allSatisfy { primary in
                try primary.call("CLUSTER", "NODES").split(separator: "\n").contains { $0.hasPrefix(replicaID) && $0.contains("master") }
            }
        })
        try replica.call("SET", "user:1", "v")
        try replica.call("SET", "user:session:9", "v")
        // The first batch after the promotion may still go to the dead address; it is rerouted, not failed.
        let report = await pool.execute([.delete(key: "user:1"), .deletePattern(pattern: "user:session:*")])

        #expect(report.isSuccess, "\(report.failures)")
        #expect(try replica.call("EXISTS", "user:1") == "0")
        #expect(try replica.call("EXISTS", "user:session:9") == "0")
        #expect(report.result(for: endpoint(replica.endpoint))?.succeeded.contains(.delete(key: "user:1")) == true)
    }

    @Test func patternsReachANewPrimaryAfterAReshardWithoutAnyRedirection() async throws {
        let cluster = try await RedisCluster.start(primaries: 3)
        let newcomer = try await RedisServer.start(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
        let pool = try makePool(.cluster, cluster.endpoints, tuning: ExecutionTuning(topologyRefreshInterval: .milliseconds(200)))
        #expect(await pool.execute([.delete(key: "warm-up")]).isSuccess)

        // The newcomer joins and takes the (empty) slot of session:moved.
        try cluster.servers[0].call("CLUSTER", "MEET", "127.0.0.1", String(newcomer.port))
        let newcomerID = try newcomer.call("CLUSTER", "MYID")
        #expect(try await eventually { try cluster.servers.allSatisfy { try $0.call("CLUSTER", "NODES").contains(newcomerID) } })
        let slot = String(HashSlot.slot(of: "session:moved"))
        for server in cluster.servers + [newcomer] {
            try server.call("CLUSTER", "SETSLOT", slot, "NODE", newcomerID)
        }
        try newcomer.call("SET", "session:moved", "v")

        // No key operation is redirected; only the slot map's age brings the newcomer in.
        #expect(try await eventually {
            _ = await pool.execute([.deletePattern(pattern: "session:*")])
            return try newcomer.call("EXISTS", "session:moved") == "0"
        })
    }
}
