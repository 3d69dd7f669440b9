import Foundation
import InvalidatorCore
import InvalidatorRuntime
import InvalidatorWebhooks
import Logging
import TestDoubles
import TestSupport
import Testing

/// `notify` and `webhook` through the whole worker: a stream source, a replicated
/// cache pool of two real redis-servers, a local HTTP server as the CDN, and the
/// dead-letter stream with `replay`.
@Suite(.timeLimit(.minutes(2))) struct SecondLayerTests {
    static let token = "tok-s3cret-9f2"
    static let account = "acct-s3cret-77"

    /// Ids a publisher might send that would break JSON built as text.
    static let hostileIDs = [#"a"b"#, #"c\d"#, "{e}", #"","x":"y"#, "ü 🚀"]

    final class Harness: Sendable {
        let events: RedisServer
        let cacheA: RedisServer
        let cacheB: RedisServer
        let cdn: HTTPTestServer
        let folder: URL
        let logs = LogCapture()

        init() async throws {
            events = try await RedisServer.start()
            cacheA = try await RedisServer.start()
            cacheB = try await RedisServer.start()
            cdn = try HTTPTestServer()
            folder = FileManager.default.temporaryDirectory.appendingPathComponent("second-layer-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try """
                rules:
                  - name: product
                    match: { entity: product }
                    pools: [cache]
                    delete: ["product:{id}"]
                    notify:
                      channel: "cache:invalidate"
                      message: { key: "product:{id}", tenantId: "{tenant}" }
                    webhook:
                      target: cdn
                      body: { tags: ["product-{id}"] }
                """.write(to: folder.appendingPathComponent("rules.yaml"), atomically: true, encoding: .utf8)
            try """
                sources:
                  redis_stream: { pool: events, streams: ["events"], block: 100ms }
                pools:
                  events: { nodes: ["\(events.endpoint)"] }
                  cache: { mode: replicated, nodes: ["\(cacheA.endpoint)", "\(cacheB.endpoint)"], command_timeout: 5s, connect_timeout: 5s }
                rules: rules.yaml
                retry: { attempts: 2, initial_backoff: 10ms, max_backoff: 50ms }
                dead_letters: { pool: events, stream: "dead-letters" }
                shutdown: { drain_timeout: 5s }
                webhooks:
                  cdn:
                    url: "\(cdn.baseURL)/purge?key=${CDN_TOKEN}"
                    headers: { Authorization: "Bearer ${CDN_TOKEN}" }
                    body: { account: "${CDN_ACCOUNT}", tags: [] }
                    batch: { field: tags, max: 3 }
                    timeout: 10s
                """.write(to: configPath, atomically: true, encoding: .utf8)
        }

        deinit {
            try? FileManager.default.removeItem(at: folder)
        }

        var configPath: URL { folder.appendingPathComponent("invalidator.yaml") }

        func loaded() throws -> LoadedConfiguration {
            try ConfigurationFiles.load(configPath: configPath.path, environment: ["CDN_TOKEN": SecondLayerTests.token, "CDN_ACCOUNT": SecondLayerTests.account])
        }

        var logger: Logger {
            var logger = Logger(label: "second-layer") { [logs] _ in CapturingLogHandler(capture: logs) }
            logger.logLevel = .debug
            return logger
        }

        func makeWorker() throws -> Worker {
            let loaded = try loaded()
            return try Worker(
                loaded: loaded, workerID: "test-worker",
                webhooks: WebhookDispatcher.forConfiguration(loaded.configuration, logger: logger), logger: logger)
        }

        func publish(ids: [String]) throws {
            for id in ids {
                let event = JSONValue.object(["entity": .string("product"), "id": .string(id), "op": .string("update"), "tenant": .string("acme")])
                try events.call("XADD", "events", "*", "event", event.serialized())
            }
        }

        func seed(ids: [String]) async throws {
            try await cacheA.seed(ids.map { "product:\($0)" })
            try await cacheB.seed(ids.map { "product:\($0)" })
        }

        /// Every tag the CDN received, request by request.
        var receivedTags: [[String]] {
            cdn.requests.map { request in
                let body = try? JSONParser.parse(bytes: request.body)
                return body?.objectValue?["tags"]?.arrayValue?.compactMap(\.stringValue) ?? []
            }
        }

        func deadLetters() throws -> [DeadLetter] {
            let output = try events.call("XRANGE", "dead-letters", "-", "+")
            let lines = output.split(separator: "\n").map(String.init)
            return try lines.indices.filter { lines[$0] == "record" && $0 + 1 < lines.count }.map { try DeadLetter(jsonText: lines[$0 + 1]) }
        }

        func replay(targets: [String] = []) async throws -> ReplayResult {
            let loaded = try loaded()
            let replayer = Replayer(loaded: loaded, logger: logger, webhooks: WebhookDispatcher.forConfiguration(loaded.configuration, logger: logger))
            var options = ReplayOptions(replayerID: "test-replay")
            options.targets = targets
            let result = try await replayer.run(options)
            await replayer.close()
            return result
        }
    }

    @Test func eachEventNotifiesOnceAndPurgesTheCDNAfterItsKeysAreGone() async throws {
        let harness = try await Harness()
        let subscriber = try RedisSubscriber(harness.cacheA, channel: "cache:invalidate")
        try await harness.seed(ids: Self.hostileIDs)
        let worker = RunningWorker(try harness.makeWorker())
        try harness.publish(ids: Self.hostileIDs)

        let keys = Self.hostileIDs.map { "product:\($0)" }
        #expect(try await eventually(timeout: .seconds(30)) {
            try existingKeys(harness.cacheA, keys) == 0 && existingKeys(harness.cacheB, keys) == 0
        })
        // Published right after the deletes: once they came, a second without messages means there are no more.
        let messages = try subscriber.payloads(firstWithin: 20, thenQuietFor: 1)
        // Exactly one message per event, each valid JSON holding the id as it was.
        #expect(messages.count == Self.hostileIDs.count)
        let parsed = try messages.map { try JSONParser.parse(bytes: $0) }
        #expect(Set(parsed) == Set(Self.hostileIDs.map { id in
            JSONValue.object(["key": .string("product:" + id), "tenantId": .string("acme")])
        }))

        #expect(try await eventually { harness.receivedTags.joined().count == Self.hostileIDs.count })
        try await worker.stop()
        let requests = harness.cdn.requests
        #expect(Set(harness.receivedTags.joined()) == Set(Self.hostileIDs.map { "product-" + $0 }))
        #expect(harness.receivedTags.allSatisfy { $0.count <= 3 }, "batch.max")
        for request in requests {
            #expect(request.method == "POST")
            #expect(request.path == "/purge?key=\(Self.token)")
            #expect(request.headers["authorization"] == "Bearer \(Self.token)")
            // The target's body, secrets included, joins the rule's only in the request.
            #expect(try JSONParser.parse(bytes: request.body).objectValue?["account"] == .string(Self.account))
        }
        #expect(try harness.deadLetters().isEmpty)
        #expect(!harness.logs.lines.contains { $0.contains(Self.token) || $0.contains(Self.account) })
    }

    /// The ordering rule: an event whose delete failed on one node notifies nobody
    /// and purges no CDN until replay has deleted it there too.
    @Test func withACacheNodeDownNotifyAndWebhookWaitForTheReplay() async throws {
        let harness = try await Harness()
        let subscriber = try RedisSubscriber(harness.cacheA, channel: "cache:invalidate")
        let ids = ["1", "2", "3", "4"]
        try await harness.seed(ids: ids)
        harness.cacheB.kill()
        let worker = RunningWorker(try harness.makeWorker())
        try harness.publish(ids: ids)

        #expect(try await eventually { try harness.deadLetters().count == ids.count })
        #expect(try existingKeys(harness.cacheA, ids.map { "product:\($0)" }) == 0, "the healthy node is not held back")
        #expect(try subscriber.payloads(firstWithin: 1, thenQuietFor: 1).isEmpty, "no app was told while a node still held the old values")
        #expect(harness.cdn.requests.isEmpty, "no CDN was purged while a node still held the old values")
        try await worker.stop()

        let records = try harness.deadLetters()
        for record in records {
            #expect(record.reason == .operationFailed)
            #expect(record.node == harness.cacheB.endpoint)
            #expect(record.pending?.notifications.first?.operations.count == 1)
            #expect(record.pending?.webhooks.count == 1)
        }
        let stored = try harness.events.call("XRANGE", "dead-letters", "-", "+")
        #expect(!stored.contains(Self.token) && !stored.contains(Self.account), "a target's secrets are never stored")

        try await harness.cacheB.restart()
        try await harness.cacheB.seed(ids.map { "product:\($0)" })
        let result = try await harness.replay()
        #expect(result.replayed == ids.count && result.failed == 0, "\(result.text)")
        #expect(try existingKeys(harness.cacheB, ids.map { "product:\($0)" }) == 0)
        let messages = try subscriber.payloads(firstWithin: 20, thenQuietFor: 1)
        #expect(messages.count == ids.count)
        #expect(Set(harness.receivedTags.joined()) == Set(ids.map { "product-\($0)" }))
        #expect(try harness.deadLetters().isEmpty)
    }

    /// A CDN that keeps failing: its items are dead-lettered for that target, the
    /// Redis work and the notifications are not held back, and `replay --target` sends them.
    @Test func aFailingTargetIsDeadLetteredPerTargetAndReplayedWithTarget() async throws {
        let harness = try await Harness()
        let subscriber = try RedisSubscriber(harness.cacheA, channel: "cache:invalidate")
        let ids = ["7", "8"]
        try await harness.seed(ids: ids)
        harness.cdn.setDefaultReply(.answer(status: 503))
        let worker = RunningWorker(try harness.makeWorker())
        try harness.publish(ids: ids)

        #expect(try await eventually { try harness.deadLetters().count == ids.count })
        try await worker.stop()
        #expect(try subscriber.payloads(firstWithin: 20, thenQuietFor: 1).count == ids.count, "notify does not wait for a webhook")
        #expect(try existingKeys(harness.cacheA, ids.map { "product:\($0)" }) == 0)
        let records = try harness.deadLetters()
        #expect(records.allSatisfy { $0.reason == .deliveryFailed && $0.target == "cdn" && $0.errorClass == "http-503" })
        let expectedTags = Set(ids.map { "product-\($0)" })
        let recordedTags: [String] = records.flatMap(\.webhooks).flatMap { item in
            (item.body.objectValue?["tags"]?.arrayValue ?? []).compactMap(\.stringValue)
        }
        #expect(Set(recordedTags) == expectedTags)
        let failedRequests = harness.cdn.requests.count

        let otherTarget = try await harness.replay(targets: ["elsewhere"])
        #expect(otherTarget.records.isEmpty)
        harness.cdn.setDefaultReply(.ok)
        let result = try await harness.replay(targets: ["cdn"])
        #expect(result.replayed == ids.count && result.failed == 0, "\(result.text)")
        #expect(Set(harness.receivedTags.dropFirst(failedRequests).joined()) == expectedTags)
        #expect(try harness.deadLetters().isEmpty)
        #expect(!harness.logs.lines.contains { $0.contains(Self.token) || $0.contains(Self.account) })
    }

    @Test func deadLetterCountsNameTheWebhookTargetOrThePoolAndNode() async throws {
        let harness = try await Harness()
        try await harness.seed(ids: ["1", "2"])
        harness.cdn.setDefaultReply(.answer(status: 503))
        let loaded = try harness.loaded()
        let storePools = PoolSet(configuration: loaded.configuration, logger: harness.logger)
        let metrics = AllValuesMetrics()
        let store = RedisStreamDeadLetterStore(
            pool: try #require(storePools.pool(named: "events")), stream: "dead-letters", metricsFactory: metrics)
        let worker = RunningWorker(try Worker(
            loaded: loaded, deadLetters: store, workerID: "test-worker",
            webhooks: WebhookDispatcher.forConfiguration(loaded.configuration, logger: harness.logger), logger: harness.logger))

        try harness.publish(ids: ["1"])
        #expect(try await eventually { try harness.deadLetters().count == 1 })
        harness.cdn.setDefaultReply(.ok)
        harness.cacheB.kill()
        try harness.publish(ids: ["2"])
        #expect(try await eventually { try harness.deadLetters().count == 2 })
        try await worker.stop()
        await storePools.close()

        let records = try harness.deadLetters()
        #expect(records.map(\.reason) == [.deliveryFailed, .operationFailed])
        let written = DeadLetterMetrics.written
        #expect(metrics.counter(written, ["reason": "delivery-failed", "pool": "", "node": "", "target": "cdn"]) == 1)
        #expect(metrics.counter(written, ["reason": "operation-failed", "pool": "cache", "node": harness.cacheB.endpoint, "target": ""]) == 1)
    }
}
