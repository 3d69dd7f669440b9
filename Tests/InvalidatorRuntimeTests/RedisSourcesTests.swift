import Foundation
import InvalidatorCore
import InvalidatorRedis
import InvalidatorRuntime
import Logging
import ServiceLifecycle
import TestSupport
import Testing

/// A real redis-server that carries the events and the cache keys, another for
/// dead letters, and a config with the given `sources:` block.
final class RedisSourceHarness: Sendable {
    let redis: RedisServer
    let deadLetterRedis: RedisServer
    let folder: URL
    let group = "invalidator"

    /// - Parameters:
    ///   - certificates: the event server also serves TLS with them.
    ///   - commandTimeout: the primary pool's `command_timeout`.
    init(sources: String, tls certificates: TestCertificates? = nil, commandTimeout: String = "5s") async throws {
        if let certificates {
            redis = try await RedisServer.start(tls: certificates)
        } else {
            redis = try await RedisServer.start()
        }
        deadLetterRedis = try await RedisServer.start()
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("invalidator-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try WorkerHarness.rules.write(to: folder.appendingPathComponent("rules.yaml"), atomically: true, encoding: .utf8)
        let config = """
            sources:
            \(sources)
            pools:
              primary: { nodes: ["\(redis.endpoint)"], command_timeout: \(commandTimeout), connect_timeout: 5s }
              dead: { nodes: ["\(deadLetterRedis.endpoint)"], connect_timeout: 5s }
            rules: rules.yaml
            retry: { attempts: 2, initial_backoff: 10ms, max_backoff: 10s }
            dead_letters: { pool: dead, stream: "dead-letters" }
            shutdown: { drain_timeout: 5s }
            """
        try config.write(to: folder.appendingPathComponent("invalidator.yaml"), atomically: true, encoding: .utf8)
    }

    deinit {
        try? FileManager.default.removeItem(at: folder)
    }

    func makeWorker(workerID: String = "test-worker", observability: WorkerObservability = WorkerObservability()) throws -> Worker {
        let loaded = try ConfigurationFiles.load(configPath: folder.appendingPathComponent("invalidator.yaml").path, environment: [:])
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        return try Worker(loaded: loaded, workerID: workerID, observability: observability, logger: logger)
    }

    /// XADDs each event in the `event` field.
    func add(_ events: [String], to stream: String = "entity-changes") async throws {
        try await redis.pipe(events.map { ["XADD", stream, "*", "event", $0] })
    }

    func publish(_ events: [String], on channel: String = "entity-changes") async throws {
        try await redis.pipe(events.map { ["PUBLISH", channel, $0] })
    }

    /// Entries of the group read and not acknowledged.
    func pending(_ stream: String = "entity-changes") throws -> Int {
        Int(try redis.call("XPENDING", stream, group).split(separator: "\n").first ?? "") ?? -1
    }

    func deadLetterReasons() throws -> [String] {
        let lines = try deadLetterRedis.call("XRANGE", "dead-letters", "-", "+").split(separator: "\n").map(String.init)
        return lines.indices.filter { lines[$0] == "reason" && $0 + 1 < lines.count }.map { lines[$0 + 1] }
    }

    func deadLetterRecords() throws -> String {
        try deadLetterRedis.call("XRANGE", "dead-letters", "-", "+")
    }
}

@Suite(.timeLimit(.minutes(2))) struct RedisSourcesTests {
    static let streamSources = """
          redis_stream:
            pool: primary
            streams: ["entity-changes", "other-changes"]
            group: invalidator
        """

    static let pubSubSources = """
          redis_pubsub:
            pool: primary
            channels: ["entity-changes"]
            patterns: ["changes.*"]
        """

    func userEvents(_ ids: Range<Int>) -> [String] {
        ids.map { #"{"entity":"user","id":"\#($0)","op":"update"}"# }
    }

    func userKeys(_ ids: Range<Int>) -> [String] {
        ids.map { "user:\($0)" }
    }

    // MARK: Streams

    @Test func streamEntriesAddedBeforeAndAfterStartAreAppliedAndAcknowledged() async throws {
        let harness = try await RedisSourceHarness(sources: Self.streamSources)
        let kept = ["user:x", "session:1", "page:1"]
        try await seedKeys(harness.redis, userKeys(0..<2600) + kept)
        // Written before any worker created the group: the group starts at 0, so these
        // count. More than one XREADGROUP and one XACK batch.
        try await harness.add(userEvents(0..<2500))

        let running = RunningWorker(try harness.makeWorker())
        let source = try #require(running.worker.redisStream)
        #expect(try await eventually { try existingKeys(harness.redis, userKeys(0..<2500)) == 0 })
        #expect(source.isSubscribed)
        try await harness.add(userEvents(2500..<2550))
        try await harness.add(userEvents(2550..<2600), to: "other-changes")
        #expect(try await eventually { try existingKeys(harness.redis, userKeys(0..<2600)) == 0 })
        #expect(try await eventually {
            try harness.pending("entity-changes") == 0 && harness.pending("other-changes") == 0
        })
        try await running.stop()

        #expect(source.processedEvents == 2600)
        #expect(try existingKeys(harness.redis, kept) == kept.count)
        #expect(try harness.deadLetterReasons().isEmpty)
        #expect(try harness.redis.call("XPENDING", "entity-changes", harness.group, "-", "+", "10").isEmpty)
    }

    @Test func poisonEntriesAreDeadLetteredAndAcknowledged() async throws {
        let harness = try await RedisSourceHarness(sources: Self.streamSources)
        try await seedKeys(harness.redis, userKeys(1..<5))
        try await harness.redis.pipe([
            ["XADD", "entity-changes", "*", "event", #"{"entity":"user","id":"1","op":"update"}"#],
            ["XADD", "entity-changes", "*", "event", #"{"entity":"user","id":"#],                  // not JSON
            ["XADD", "entity-changes", "*", "event", #"{"entity":"user","op":"update"}"#],         // no id
            // A flat entry reads as a native event.
            ["XADD", "entity-changes", "*", "entity", "user", "id", "2", "op", "update"],
            // A single field, whatever its name, is the event.
            ["XADD", "entity-changes", "*", "data", #"{"entity":"user","id":"3","op":"update"}"#],
            // Several fields, none of them an event: dead-lettered with all of them.
            ["XADD", "entity-changes", "*", "colour", "blue", "size", "9"],
            ["XADD", "entity-changes", "*", "event", #"{"entity":"user","id":"4","op":"update"}"#],
        ])
        let running = RunningWorker(try harness.makeWorker())
        #expect(try await eventually { try existingKeys(harness.redis, userKeys(1..<5)) == 0 })
        #expect(try await eventually { try harness.deadLetterReasons().count == 3 })
        #expect(try await eventually { try harness.pending() == 0 })
        try await running.stop()

        #expect(try harness.deadLetterReasons().sorted() == ["invalid-json", "schema-violation", "schema-violation"])
        let records = try harness.deadLetterRecords()
        #expect(records.contains(#""kind":"redis_stream","stream":"entity-changes","entry_id":""#))
        #expect(records.contains(#"{\"colour\":\"blue\",\"size\":\"9\"}"#))
        #expect(try harness.pending() == 0)
    }

    @Test func pendingEntriesOfADeadConsumerAreClaimedAppliedAndAcknowledged() async throws {
        let harness = try await RedisSourceHarness(sources: """
              redis_stream:
                pool: primary
                streams: ["entity-changes"]
                group: invalidator
                claim_idle: 1s
            """)
        let keys = userKeys(0..<20)
        try await seedKeys(harness.redis, keys + ["user:20"])
        try harness.redis.call("XGROUP", "CREATE", "entity-changes", harness.group, "0", "MKSTREAM")
        try await harness.add(userEvents(0..<20))
        // Another worker reads them and dies before acknowledging.
        try harness.redis.call("XREADGROUP", "GROUP", harness.group, "dead-worker", "COUNT", "100", "STREAMS", "entity-changes", ">")
        #expect(try harness.pending() == 20)

        let running = RunningWorker(try harness.makeWorker())
        let source = try #require(running.worker.redisStream)
        // New entries flow while the old ones wait for claim_idle.
        try await harness.add(userEvents(20..<21))
        #expect(try await eventually { try existingKeys(harness.redis, ["user:20"]) == 0 })
        #expect(try await eventually { try existingKeys(harness.redis, keys) == 0 })
        #expect(try await eventually { try harness.pending() == 0 })
        try await running.stop()

        #expect(source.claimedEntries == 20)
        #expect(source.processedEvents == 21)
        #expect(try harness.deadLetterReasons().isEmpty)
    }

    @Test func entriesThisConsumerReadInAnEarlierRunAreProcessedWithoutWaitingForClaimIdle() async throws {
        let harness = try await RedisSourceHarness(sources: Self.streamSources)
        let keys = userKeys(0..<10)
        try await seedKeys(harness.redis, keys)
        try harness.redis.call("XGROUP", "CREATE", "entity-changes", harness.group, "0", "MKSTREAM")
        try await harness.add(userEvents(0..<10))
        // The same pod, before a crash: read under the worker id, never acknowledged.
        try harness.redis.call("XREADGROUP", "GROUP", harness.group, "test-worker", "COUNT", "100", "STREAMS", "entity-changes", ">")
        #expect(try harness.pending() == 10)

        let running = RunningWorker(try harness.makeWorker(workerID: "test-worker"))
        let source = try #require(running.worker.redisStream)
        // claim_idle is 30 s by default; these must not wait for it.
        #expect(try await eventually { try existingKeys(harness.redis, keys) == 0 })
        #expect(try await eventually { try harness.pending() == 0 })
        try await running.stop()
        #expect(source.claimedEntries == 0)
        #expect(source.processedEvents == 10)
    }

    @Test func anEntryIsAcknowledgedOnlyAfterItsDelayedRedelete() async throws {
        let harness = try await RedisSourceHarness(sources: Self.streamSources)
        try await seedKeys(harness.redis, ["page:7"])
        let running = RunningWorker(try harness.makeWorker())
        try await harness.add([#"{"entity":"page","id":"7","op":"update"}"#])
        #expect(try await eventually { try existingKeys(harness.redis, ["page:7"]) == 0 })
        // The redelete is 2 s away: the entry is still pending.
        #expect(try harness.pending() == 1)
        // A reader refills the cache from a stale replica right after the first delete.
        try harness.redis.call("SET", "page:7", "stale")
        #expect(try await eventually { try existingKeys(harness.redis, ["page:7"]) == 0 })
        #expect(try await eventually { try harness.pending() == 0 })
        try await running.stop()
    }

    @Test func shutdownDrainsTheRedeleteAndAcknowledgesIt() async throws {
        let harness = try await RedisSourceHarness(sources: Self.streamSources)
        try await seedKeys(harness.redis, ["page:8"])
        let running = RunningWorker(try harness.makeWorker())
        try await harness.add([#"{"entity":"page","id":"8","op":"update"}"#])
        #expect(try await eventually { try existingKeys(harness.redis, ["page:8"]) == 0 })
        try harness.redis.call("SET", "page:8", "stale")
        try await running.stop()
        #expect(try existingKeys(harness.redis, ["page:8"]) == 0)
        #expect(try harness.pending() == 0)
    }

    @Test func readingResumesAfterTheStreamNodeRestarted() async throws {
        let harness = try await RedisSourceHarness(sources: Self.streamSources)
        try await seedKeys(harness.redis, ["user:1"])
        let running = RunningWorker(try harness.makeWorker())
        let source = try #require(running.worker.redisStream)
        try await harness.add(userEvents(1..<2))
        #expect(try await eventually { try existingKeys(harness.redis, ["user:1"]) == 0 })

        // Restarted without persistence: the stream and its group are gone.
        harness.redis.kill()
        #expect(try await eventually { !source.isSubscribed })
        try await harness.redis.restart()
        try await seedKeys(harness.redis, ["user:2"])
        try await harness.add(userEvents(2..<3))
        #expect(try await eventually { try existingKeys(harness.redis, ["user:2"]) == 0 })
        #expect(try await eventually { try harness.pending() == 0 && source.isSubscribed })
        try await running.stop()
        #expect(try harness.deadLetterReasons().isEmpty)
    }

    // MARK: Both

    /// Both Redis loops wait for input in bounded steps (XREADGROUP BLOCK, short
    /// socket waits on pub/sub), so while idle they keep beating; ended loops are not monitored.
    @Test func idleRedisLoopsKeepBeating() async throws {
        let harness = try await RedisSourceHarness(sources: Self.streamSources + "\n" + Self.pubSubSources)
        // The stream reader then blocks for 3 s at a time (half the stall timeout).
        let running = RunningWorker(try harness.makeWorker(observability: WorkerObservability(stallTimeout: .seconds(6))))
        let liveness = running.worker.liveness
        #expect(try await eventually { liveness.loops.count == 2 })
        #expect(liveness.loops.map(\.loop) == ["redis_pubsub", "redis_stream entity-changes,other-changes"])
        #expect(try await holds(for: .seconds(8)) { liveness.loops.count == 2 && !liveness.loops.contains(where: \.isStalled) }, "\(liveness.loops)")
        try await running.stop()
        #expect(liveness.loops.isEmpty)
    }

    // MARK: Pub/sub

    @Test func publishedEventsOnChannelsAndPatternsAreApplied() async throws {
        let harness = try await RedisSourceHarness(sources: Self.pubSubSources)
        let kept = ["user:x", "session:1"]
        try await seedKeys(harness.redis, userKeys(0..<120) + kept)
        let running = RunningWorker(try harness.makeWorker())
        let source = try #require(running.worker.redisPubSub)
        #expect(try await eventually { source.isSubscribed })
        #expect(try harness.redis.call("PUBSUB", "NUMSUB", "entity-changes") == "entity-changes\n1")
        #expect(try harness.redis.call("PUBSUB", "NUMPAT") == "1")

        try await harness.publish(userEvents(0..<100))
        try await harness.publish(userEvents(100..<120) + [#"{"entity":"user""#], on: "changes.user")
        // Generous: the suite runs its tests side by side on two cores.
        #expect(try await eventually(timeout: .seconds(30)) { try existingKeys(harness.redis, userKeys(0..<120)) == 0 })
        #expect(try await eventually { try harness.deadLetterReasons() == ["invalid-json"] })
        try await running.stop()

        #expect(source.processedEvents == 121)
        #expect(source.reconnections == 0)
        #expect(!source.isSubscribed)
        #expect(try harness.deadLetterRecords().contains(#""source":{"kind":"redis_pubsub","channel":"changes.user"}"#))
        #expect(try existingKeys(harness.redis, kept) == kept.count)
    }

    @Test func shutdownProcessesWhatWasPublishedBeforeIt() async throws {
        let harness = try await RedisSourceHarness(sources: Self.pubSubSources)
        let keys = userKeys(0..<500)
        try await seedKeys(harness.redis, keys + ["page:3"])
        let running = RunningWorker(try harness.makeWorker())
        let source = try #require(running.worker.redisPubSub)
        #expect(try await eventually { source.isSubscribed })
        // Published (and so queued for the subscriber) before shutdown starts.
        try await harness.publish(userEvents(0..<500) + [#"{"entity":"page","id":"3","op":"update"}"#])
        try await running.stop()
        #expect(source.processedEvents == 501)
        #expect(try existingKeys(harness.redis, keys + ["page:3"]) == 0)
    }

    @Test func aRestartedNodeIsResubscribedAndTheReconnectionCounted() async throws {
        let harness = try await RedisSourceHarness(sources: Self.pubSubSources)
        try await seedKeys(harness.redis, ["user:1"])
        let running = RunningWorker(try harness.makeWorker())
        let source = try #require(running.worker.redisPubSub)
        #expect(try await eventually { source.isSubscribed })
        try await harness.publish(userEvents(1..<2))
        #expect(try await eventually { try existingKeys(harness.redis, ["user:1"]) == 0 })

        harness.redis.kill()
        #expect(try await eventually { !source.isSubscribed })
        try await harness.redis.restart()
        #expect(try await eventually {
            source.reconnections == 1 && source.isSubscribed
                && (try? harness.redis.call("PUBSUB", "NUMSUB", "entity-changes")) == "entity-changes\n1"
        })
        try await seedKeys(harness.redis, userKeys(2..<12))
        try await harness.publish(userEvents(2..<7))
        try await harness.publish(userEvents(7..<12), on: "changes.user")
        #expect(try await eventually { try existingKeys(harness.redis, userKeys(2..<12)) == 0 })
        try await running.stop()

        #expect(source.reconnections == 1)
        #expect(source.processedEvents == 11)
        #expect(try harness.deadLetterReasons().isEmpty)
    }

    // MARK: Pub/sub keepalive

    /// PING calls the server has counted since its last `CONFIG RESETSTAT`.
    func pingCalls(_ server: RedisServer) throws -> Int {
        let stats = try server.call("INFO", "commandstats")
        guard let line = stats.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("cmdstat_ping:") }) else { return 0 }
        return Int(line.split(separator: "=").dropFirst().first?.split(separator: ",").first ?? "") ?? -1
    }

    @Test func anIdleSubscriptionSendsNothingAndStillDelivers() async throws {
        let harness = try await RedisSourceHarness(sources: Self.pubSubSources)
        try await seedKeys(harness.redis, userKeys(0..<10))
        let running = RunningWorker(try harness.makeWorker())
        let source = try #require(running.worker.redisPubSub)
        #expect(try await eventually { source.isSubscribed })
        try harness.redis.call("CONFIG", "RESETSTAT")

        try await Task.sleep(for: .seconds(3))
        #expect(try pingCalls(harness.redis) == 0)
        let idleCommands = try harness.redis.call("INFO", "stats").split(whereSeparator: \.isNewline)
            .first { $0.hasPrefix("total_commands_processed:") }
        report(
            idle: "pub/sub subscribed 3 s with the default 30 s keepalive (the test's own two INFO calls included)",
            String(idleCommands ?? "?"))

        try await harness.publish(userEvents(0..<10))
        #expect(try await eventually { try existingKeys(harness.redis, userKeys(0..<10)) == 0 })
        try await running.stop()
        #expect(source.reconnections == 0)
    }

    @Test func aQuietSubscriptionIsCheckedByAKeepalivePing() async throws {
        let harness = try await RedisSourceHarness(sources: Self.pubSubSources + "\n    keepalive: 300ms", commandTimeout: "500ms")
        let running = RunningWorker(try harness.makeWorker())
        let source = try #require(running.worker.redisPubSub)
        #expect(try await eventually { source.isSubscribed })
        try harness.redis.call("CONFIG", "RESETSTAT")
        #expect(try await eventually { try pingCalls(harness.redis) >= 2 })
        #expect(source.reconnections == 0)

        // A keepalive PING left unanswered past the command timeout (500 ms): the
        // connection counts as dead and the subscription is set up again.
        try harness.redis.call("CLIENT", "PAUSE", "3000", "ALL")
        #expect(try await eventually { source.reconnections == 1 && source.isSubscribed })
        try await seedKeys(harness.redis, userKeys(0..<5))
        try await harness.publish(userEvents(0..<5))
        #expect(try await eventually { try existingKeys(harness.redis, userKeys(0..<5)) == 0 })
        try await running.stop()
    }

    /// The worker's own pools have no TLS settings yet, so the subscription runs in a
    /// source of its own over a TLS pool, feeding the worker's pipeline.
    @Test func aSubscriptionOverTLSDeliversAndSendsNothingWhileIdle() async throws {
        let certificates = try await TestCertificates.generate()
        let harness = try await RedisSourceHarness(sources: Self.pubSubSources, tls: certificates)
        try await seedKeys(harness.redis, userKeys(0..<20))
        let worker = try harness.makeWorker()
        let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        let tlsPool = RedisPool(
            configuration: RedisPoolConfiguration(
                name: "primary", mode: .single, nodes: [RedisEndpoint(host: "127.0.0.1", port: harness.redis.tlsPort ?? 0)],
                tls: RedisTLSOptions(caFile: certificates.caFile)),
            logger: logger)
        var configuration = RedisPubSubSourceConfiguration(pool: "primary")
        configuration.channels = ["entity-changes"]
        let source = RedisPubSubSource(
            configuration: configuration, pool: tlsPool, pipeline: worker.pipeline, drainTimeout: .seconds(5), logger: logger)
        let group = ServiceGroup(services: [source], logger: logger)
        let running = Task { try await group.run() }

        #expect(try await eventually { source.isSubscribed })
        #expect(try harness.redis.call("CLIENT", "LIST").contains("laddr=127.0.0.1:\(harness.redis.tlsPort ?? 0)"))
        try harness.redis.call("CONFIG", "RESETSTAT")
        try await Task.sleep(for: .seconds(2))
        #expect(try pingCalls(harness.redis) == 0)

        try await harness.publish(userEvents(0..<20))
        #expect(try await eventually { try existingKeys(harness.redis, userKeys(0..<20)) == 0 })
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(source.processedEvents == 20)
        #expect(source.reconnections == 0)
        await tlsPool.close()
    }

    private func report(idle scenario: String, _ figure: String) {
        print("FIGURE \(scenario): \(figure)")
    }
}
