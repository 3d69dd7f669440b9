import Foundation
import TestSupport
import Testing

/// An idle worker must not spend a hosted Redis's command budget: with the default
/// settings, a worker with a Kafka, a Streams and a pub/sub source, its cache pool and
/// its dead letters all on one node sends that node fewer than 10 commands a minute.
@Suite(.timeLimit(.minutes(3))) struct IdleTrafficTests {
    @Test func anIdleWorkerSendsFewerThanTenCommandsAMinutePerNode() async throws {
        let scenario = try Scenario()
        let kafka = try FaultKafka(partitions: 2)
        let node = try await RedisServer.start()
        try scenario.write("rules.yaml", RedisNodeFaultTests.rules)
        let configPath = try scenario.write("invalidator.yaml", """
            sources:
              kafka:
                brokers: "\(kafka.bootstrapServers)"
                topics: ["\(kafka.topic)"]
                group: idle-\(UUID().uuidString.prefix(8))
              redis_stream: { pool: cache, streams: ["entity-changes"], group: invalidator }
              redis_pubsub: { pool: cache, channels: ["entity-changes"] }
            pools:
              cache: { nodes: ["\(node.endpoint)"] }
            rules: rules.yaml
            dead_letters: { pool: cache, stream: "dead-letters" }
            """)
        let worker = try InvalidatorProcess(run: configPath)
        #expect(try await worker.waitUntilReady())
        // Past start-up (group creation, first reads, the node's settings): count from here.
        try await Task.sleep(for: .seconds(10))
        try node.call("CONFIG", "RESETSTAT")
        try await Task.sleep(for: .seconds(60))
        let stats = try node.call("INFO", "commandstats")
        var commands: [String: Int] = [:]
        // INFO's lines end in "\r\n", one Character in Swift: split on any newline.
        for line in stats.split(whereSeparator: \.isNewline) where line.hasPrefix("cmdstat_") {
            let name = line.dropFirst("cmdstat_".count).prefix { $0 != ":" }
            let calls = line.split(separator: "calls=").dropFirst().first?.prefix { $0.isNumber }
            commands[String(name)] = calls.flatMap { Int($0) } ?? 0
        }
        // The INFO and CONFIG calls of this test are not the worker's.
        commands = commands.filter { !$0.key.hasPrefix("info") && !$0.key.hasPrefix("config") }
        let total = commands.values.reduce(0, +)
        #expect(commands["ping"] != nil || commands["xreadgroup"] != nil, "the worker's own commands are counted: \(stats.prefix(300))")
        #expect(total < 10, "\(commands.sorted { $0.key < $1.key })")
        #expect(worker.isRunning)
        report("idle worker (Kafka, Streams and pub/sub sources, one node)", "\(total) commands in 60 s: \(commands.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))")
    }
}
