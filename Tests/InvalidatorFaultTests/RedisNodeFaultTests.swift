import Foundation
import InvalidatorKafka
import Logging
import TestSupport
import Testing

/// Redis nodes die, come back, fail over and reshard under a running worker.
/// Invariant: every event's keys are deleted in the end, directly or after
/// `replay`, every dead letter is readable by `replay`, and the worker never exits.
@Suite(.timeLimit(.minutes(3))) struct RedisNodeFaultTests {
    static let rules = """
        rules:
          - name: user
            match: { entity: user }
            delete: ["user:{id}"]
        """

    /// A worker config: the Kafka source, `pool` as the rules' pool, dead letters on their own server.
    static func config(kafka: FaultKafka, pool: String, deadLetters: RedisServer) -> String {
        """
        sources:
          kafka:
            brokers: "\(kafka.bootstrapServers)"
            topics: ["\(kafka.topic)"]
            group: fault-\(UUID().uuidString.prefix(8))
            properties: { fetch.wait.max.ms: "5" }
        pools:
          cache: \(pool)
          dead: { nodes: ["\(deadLetters.endpoint)"] }
        rules: rules.yaml
        retry: { attempts: 3, initial_backoff: 20ms, max_backoff: 100ms }
        dead_letters: { pool: dead, stream: "dead-letters" }
        shutdown: { drain_timeout: 5s }
        """
    }

    /// Sends `user` events with increasing ids, `perTick` every 20 ms, until cancelled.
    final class SteadyProducer: Sendable {
        private let task: Task<Int, any Error>

        init(kafka: FaultKafka, from first: Int = 0, perTick: Int = 5) throws {
            let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(brokers: kafka.bootstrapServers), logger: Logger(label: "producer"))
            task = Task {
                var next = first
                while !Task.isCancelled {
                    for _ in 0..<perTick {
                        let event = events("user", next..<(next + 1))[0]
                        try await producer.send(KafkaProducerRecord(topic: kafka.topic, partition: Int32(next) % kafka.partitions, value: Array(event.utf8)))
                        next += 1
                    }
                    try await producer.flush()
                    try? await Task.sleep(for: .milliseconds(20))
                }
                await producer.close()
                return next
            }
        }

        /// Stops producing; returns the number of events sent (ids `first..<returned`).
        func stop() async throws -> Int {
            task.cancel()
            return try await task.value
        }
    }

    /// `replay` until the store is empty; returns how many records it replayed.
    func replayEverything(_ configPath: String, deadLetters: RedisServer) async throws -> Int {
        var replayed = 0
        for _ in 0..<5 {
            let (exit, output) = try runInvalidator(["replay", "--config", configPath, "--format", "json", "--log-level", "error"])
            #expect(!output.contains("unreadable-record"), "\(output.prefix(2000))")
            let summary = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
            replayed += summary?["replayed"] as? Int ?? 0
            if exit == .success, try deadLetters.call("XLEN", "dead-letters") == "0" { return replayed }
            try await Task.sleep(for: .seconds(1))
        }
        Issue.record("dead letters remain: \(try deadLetters.call("XLEN", "dead-letters"))")
        return replayed
    }

    enum Mode: String, CaseIterable, Sendable {
        case single, replicated, sharded
    }

    /// One node of the pool is killed for 5 s while events flow, then comes back
    /// with its data (append-only file). Events for it are retried, then
    /// dead-lettered; `replay` deletes every one of their keys.
    @Test(arguments: Mode.allCases) func aNodeDownAndBack(mode: Mode) async throws {
        let scenario = try Scenario()
        let kafka = try FaultKafka(partitions: 4)
        let nodes = try await RedisServer.start(count: mode == .single ? 1 : 3, ["--appendonly", "yes", "--appendfsync", "always"])
        let deadLetters = try await RedisServer.start()
        let victim = nodes[nodes.count - 1]
        let count = 3000
        let keys = (0..<count).map { "user:\($0)" }
        for node in nodes { try await node.seed(keys) }
        try scenario.write("rules.yaml", Self.rules)
        let pool = "{ mode: \(mode.rawValue), nodes: [\(nodes.map { "\"\($0.endpoint)\"" }.joined(separator: ", "))], connect_timeout: 300ms, command_timeout: 500ms }"
        let configPath = try scenario.write("invalidator.yaml", Self.config(kafka: kafka, pool: pool, deadLetters: deadLetters))
        let worker = try InvalidatorProcess(run: configPath)
        #expect(try await worker.waitUntilReady())

        let producer = try SteadyProducer(kafka: kafka)
        try await Task.sleep(for: .milliseconds(500))
        victim.kill()
        try await Task.sleep(for: .seconds(5))
        try await victim.restart()
        let sent = min(try await producer.stop(), count)
        // Everything sent is either applied or dead-lettered: the group commits it all.
        #expect(try await eventually(timeout: .seconds(60)) { (try worker.metric("invalidator_events_total") ?? 0) >= Double(sent) })
        let written = Int(try deadLetters.call("XLEN", "dead-letters")) ?? 0
        #expect(worker.isRunning, "\(worker.log.suffix(2000))")
        #expect(worker.terminate() == .success)

        let replayed = try await replayEverything(configPath, deadLetters: deadLetters)
        // Each key is deleted where it lives: everywhere, or on its shard alone.
        let copies = mode == .sharded ? nodes.count - 1 : 0
        #expect(try nodes.map { try existingKeys($0, Array(keys[0..<sent])) }.reduce(0, +) == sent * copies)
        for node in nodes {
            #expect(try existingKeys(node, Array(keys[sent...])) == count - sent, "keys of events never sent stay")
        }
        report("redis \(mode.rawValue) node down 5 s", "\(sent) events, \(written) dead letters written, \(replayed) replayed, 0 unreadable")
    }

    /// A cluster primary is killed (kill -9) and its replica promoted: the worker
    /// finds the new owner without a restart; what it dead-lettered meanwhile replays.
    @Test func aClusterPrimaryKilledAndItsReplicaPromoted() async throws {
        let s = try await ClusterScenario.startProducing()
        let count = s.keys.count
        // Probe keys share the slot of {probe}: user:{probe}1, user:{probe}2 ...
        let victim = try s.cluster.server(owning: "user:{probe}")
        let replica = try #require(try s.cluster.replicas(of: victim).first)
        victim.kill()
        let promotion = try #require(try await timeUntil(timeout: .seconds(30)) { (try? replica.call("ROLE").hasPrefix("master")) == true })
        // A fresh key in the failed slots and its event, every 250 ms, until one is deleted.
        var probe = 0
        let resumed = try await timeUntil(timeout: .seconds(30)) {
            if probe > 0, try replica.call("EXISTS", "user:{probe}\(probe)") == "0" { return true }
            probe += 1
            try replica.call("SET", "user:{probe}\(probe)", "v")
            try await s.kafka.produce([#"{"entity":"user","id":"{probe}\#(probe)","op":"update"}"#])
            try await Task.sleep(for: .milliseconds(250))
            return false
        }
        let sent = try await s.producer.stop()
        #expect(resumed != nil && resumed! <= .seconds(10), "invalidations for the promoted slots resumed after \(String(describing: resumed))")

        #expect(try await eventually(timeout: .seconds(60)) { (try s.worker.metric("invalidator_events_total") ?? 0) >= Double(sent + probe) })
        let written = Int(try s.deadLetters.call("XLEN", "dead-letters")) ?? 0
        #expect(s.worker.isRunning, "\(s.worker.log.suffix(2000))")
        #expect(s.worker.terminate() == .success)
        let replayed = try await replayEverything(s.configPath, deadLetters: s.deadLetters)
        for primary in try s.cluster.primaries() {
            #expect(try existingKeys(primary, Array(s.keys[0..<min(sent, count)]) + (1...probe).map { "user:{probe}\($0)" }) == 0, "\(primary.endpoint)")
        }
        report("cluster primary killed", "replica promoted \(promotion) after the kill; invalidations resumed \(resumed.map { "\($0)" } ?? "never") after the promotion; \(written) dead letters written, \(replayed) replayed")
    }

    /// `CLUSTER FAILOVER` on a replica: the old primary becomes a replica and answers MOVED.
    @Test func aManualClusterFailover() async throws {
        let s = try await ClusterScenario.startProducing()
        let count = s.keys.count
        let primary = try s.cluster.server(owning: "user:1")
        let replica = try #require(try s.cluster.replicas(of: primary).first)
        try replica.call("CLUSTER", "FAILOVER")
        #expect(try await eventually(timeout: .seconds(30)) { (try? replica.call("ROLE").hasPrefix("master")) == true })
        try await Task.sleep(for: .seconds(1))
        let sent = try await s.producer.stop()

        #expect(try await eventually(timeout: .seconds(60)) { (try s.worker.metric("invalidator_events_total") ?? 0) >= Double(sent) })
        let written = Int(try s.deadLetters.call("XLEN", "dead-letters")) ?? 0
        #expect(s.worker.terminate() == .success)
        let replayed = try await replayEverything(s.configPath, deadLetters: s.deadLetters)
        for primary in try s.cluster.primaries() {
            #expect(try existingKeys(primary, Array(s.keys[0..<min(sent, count)])) == 0, "\(primary.endpoint)")
        }
        report("cluster manual failover", "\(sent) events, \(written) dead letters, \(replayed) replayed")
    }
}


/// A worker on a Kafka topic and a 3-primary cluster with a replica each, whose
/// keys `user:0` ... `user:4999` are seeded on their primaries and replicated, with
/// user events produced at a steady pace.
struct ClusterScenario {
    let scenario: Scenario
    let kafka: FaultKafka
    let cluster: RedisCluster
    let deadLetters: RedisServer
    let keys: [String]
    let configPath: String
    let worker: InvalidatorProcess
    let producer: RedisNodeFaultTests.SteadyProducer

    /// Starts everything, then user events at a steady pace (for half a second before returning).
    static func startProducing() async throws -> ClusterScenario {
        let scenario = try Scenario()
        let kafka = try FaultKafka(partitions: 4)
        let cluster = try await RedisCluster.start(primaries: 3, replicasPerPrimary: 1)
        let deadLetters = try await RedisServer.start()
        let keys = (0..<5000).map { "user:\($0)" }
        try await seed(keys, in: cluster)
        try scenario.write("rules.yaml", RedisNodeFaultTests.rules)
        let seeds = cluster.endpoints.map { "\"\($0)\"" }.joined(separator: ", ")
        let pool = "{ mode: cluster, nodes: [\(seeds)], connect_timeout: 300ms, command_timeout: 500ms }"
        let configPath = try scenario.write("invalidator.yaml", RedisNodeFaultTests.config(kafka: kafka, pool: pool, deadLetters: deadLetters))
        let worker = try InvalidatorProcess(run: configPath)
        #expect(try await worker.waitUntilReady())
        let producer = try RedisNodeFaultTests.SteadyProducer(kafka: kafka)
        try await Task.sleep(for: .milliseconds(500))
        return ClusterScenario(
            scenario: scenario, kafka: kafka, cluster: cluster, deadLetters: deadLetters, keys: keys, configPath: configPath,
            worker: worker, producer: producer)
    }

    /// Writes each key on its slot's primary and waits until the replicas have them.
    static func seed(_ keys: [String], in cluster: RedisCluster) async throws {
        let primaries = try cluster.primaries()
        var byOwner: [Int: [String]] = [:]
        for key in keys {
            let owner = try primaries.firstIndex { try !$0.call("EXISTS", key).hasPrefix("MOVED") } ?? 0
            byOwner[owner, default: []].append(key)
        }
        for (owner, ownedKeys) in byOwner {
            try await primaries[owner].seed(ownedKeys)
            try primaries[owner].call("WAIT", "1", "5000")
        }
    }
}

/// A node comes back with a rotated password: every probe of its circuit is refused
/// with an error reply. The circuit must not stick half-open: once the password is
/// right again, invalidations resume without a restart and `/readyz` turns green.
@Suite(.timeLimit(.minutes(2))) struct CircuitFaultTests {
    @Test func aProbeRefusedWithWrongpassAndThePasswordPutRight() async throws {
        let scenario = try Scenario()
        let kafka = try FaultKafka(partitions: 2)
        let cache = try await RedisServer.start()
        try cache.call("CONFIG", "SET", "requirepass", "secret")
        let deadLetters = try await RedisServer.start()
        try scenario.write("rules.yaml", RedisNodeFaultTests.rules)
        let configPath = try scenario.write("invalidator.yaml", RedisNodeFaultTests.config(
            kafka: kafka, pool: "{ nodes: [\"\(cache.endpoint)\"], password: secret, connect_timeout: 300ms }", deadLetters: deadLetters))
        // /readyz follows the node within a second, not the default 30 s.
        let worker = try InvalidatorProcess(run: configPath, environment: ["INVALIDATOR__HTTP__HEALTH_CHECK_INTERVAL": "1s"])
        #expect(try await worker.waitUntilReady())

        cache.kill()
        try await kafka.produce(events("user", 0..<20))
        #expect(try await eventually { try deadLetters.call("XLEN", "dead-letters") == "20" })
        try await cache.restart()
        try cache.call("CONFIG", "SET", "requirepass", "rotated")
        for id in 0..<40 { try cache.call("SET", "user:\(id)", "v") }
        try await kafka.produce(events("user", 20..<40))
        #expect(try await eventually { try deadLetters.call("XLEN", "dead-letters") == "40" })
        #expect(try await eventually { (try? worker.get("/readyz").status) == 503 }, "not ready while the node refuses the password")

        // Put right: once the circuit's cool-down has passed, a probe succeeds and closes it.
        try cache.call("CONFIG", "SET", "requirepass", "secret")
        var probe = 0
        let recovered = try await timeUntil(timeout: .seconds(30)) {
            if probe > 0, try cache.call("EXISTS", "user:probe\(probe)") == "0" { return true }
            probe += 1
            try cache.call("SET", "user:probe\(probe)", "v")
            try await kafka.produce([#"{"entity":"user","id":"probe\#(probe)","op":"update"}"#])
            try await Task.sleep(for: .milliseconds(250))
            return false
        }
        #expect(recovered != nil, "\(worker.log.suffix(2000))")
        #expect(try await worker.waitUntilReady(timeout: .seconds(15)))
        #expect(worker.terminate() == .success)
        let (exit, output) = try runInvalidator(["replay", "--config", configPath, "--log-level", "error"])
        #expect(exit == .success, "\(output)")
        #expect(try deadLetters.call("XLEN", "dead-letters") == "0")
        #expect(try existingKeys(cache, (0..<40).map { "user:\($0)" } + (1...probe).map { "user:probe\($0)" }) == 0)
        report("circuit probe refused (WRONGPASS)", "invalidations resumed \(recovered.map { "\($0)" } ?? "never") after the password was put right (circuit cool-down 5 s); every dead letter replayed")
    }
}
