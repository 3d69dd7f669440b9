import InvalidatorCore
import InvalidatorWebhooks
import Logging
import TestDoubles
import TestSupport
import Testing

/// Requests as configured, and how items of a batch merge into requests.
@Suite(.timeLimit(.minutes(2))) struct WebhookDeliveryTests {
    @Test func requestsCarryTheConfiguredMethodHeadersAndBody() async throws {
        let server = try HTTPTestServer()
        var purge = target(server: server, path: "/purge?zone=1")
        purge.method = "PUT"
        purge.headers = [.init(name: "Authorization", value: "Bearer s3cret"), .init(name: "X-Purge-Source", value: "invalidator")]
        var plain = target("plain", server: server, path: "/revalidate")
        plain.headers = [.init(name: "Content-Type", value: "application/vnd.api+json")]
        let body = tagsBody(["user:1"])
        let failures = try await withDispatcher([purge, plain]) { dispatcher in
            await dispatcher.deliver([
                WebhookItem(target: "cdn", body: body, rule: "users"),
                WebhookItem(target: "plain", body: .object(JSONObject([.init(key: "path", value: .string("/users/1"))])), rule: "users"),
            ])
        }
        #expect(failures.isEmpty)
        let requests = server.requests
        try #require(requests.count == 2)
        let put = try #require(requests.first { $0.method == "PUT" })
        #expect(put.path == "/purge?zone=1")
        #expect(put.headers["authorization"] == "Bearer s3cret")
        #expect(put.headers["x-purge-source"] == "invalidator")
        #expect(put.headers["content-type"] == "application/json")
        #expect(put.bodyText == #"{"site":"www","tags":["user:1"]}"#)
        let post = try #require(requests.first { $0.method == "POST" })
        #expect(post.path == "/revalidate")
        #expect(post.headers["content-type"] == "application/vnd.api+json", "a configured Content-Type is kept")
        #expect(post.bodyText == #"{"path":"/users/1"}"#)
    }

    @Test func batchesSplitAtTheLimit() async throws {
        let server = try HTTPTestServer()
        let all = (0..<75).map { "tag-\($0)" }
        // Five events of 15 tags each: 75 tags, 30 per request at most.
        let items = stride(from: 0, to: 75, by: 15).map { tagsItem(Array(all[$0..<($0 + 15)])) }
        let failures = try await withDispatcher([target(server: server, batch: .init(field: "tags", max: 30))]) {
            await $0.deliver(items)
        }
        #expect(failures.isEmpty)
        let sent = server.requests.map(tags(of:))
        #expect(sent.map(\.count).sorted() == [15, 30, 30])
        #expect(sent.flatMap { $0 }.sorted() == all.sorted(), "every tag once")
    }

    @Test func duplicateTagsAcrossEventsAreSentOnce() async throws {
        let server = try HTTPTestServer()
        let items = [tagsItem(["a", "b"]), tagsItem(["b", "c"]), tagsItem(["c", "a"]), tagsItem([])]
        let failures = try await withDispatcher([target(server: server, batch: .init(field: "tags", max: 30))]) {
            await $0.deliver(items)
        }
        #expect(failures.isEmpty)
        #expect(server.requests.map(\.bodyText) == [#"{"site":"www","tags":["a","b","c"]}"#])
    }

    @Test func bodiesDifferingOutsideTheBatchFieldAreSeparateRequests() async throws {
        let server = try HTTPTestServer()
        let items = [tagsItem(["a"], site: "www"), tagsItem(["b"], site: "shop"), tagsItem(["c"], site: "www")]
        let failures = try await withDispatcher([target(server: server, batch: .init(field: "tags", max: 30))]) {
            await $0.deliver(items)
        }
        #expect(failures.isEmpty)
        #expect(Set(server.requests.map(\.bodyText)) == [#"{"site":"www","tags":["a","c"]}"#, #"{"site":"shop","tags":["b"]}"#])
    }

    @Test func withoutBatchEachDistinctBodyIsOneRequest() async throws {
        let server = try HTTPTestServer()
        let items = [tagsItem(["a"]), tagsItem(["a"]), tagsItem(["b"])]
        let failures = try await withDispatcher([target(server: server)]) { await $0.deliver(items) }
        #expect(failures.isEmpty)
        #expect(server.requests.map(\.bodyText).sorted() == [#"{"site":"www","tags":["a"]}"#, #"{"site":"www","tags":["b"]}"#])
    }

    @Test func aFailedRequestFailsEveryItemItCarried() async throws {
        let server = try HTTPTestServer()
        // 40 tags in two requests (30 + 10); the second request is refused.
        server.script([.ok, .answer(status: 400)])
        let items = [tagsItem((0..<20).map { "x\($0)" }), tagsItem((20..<30).map { "x\($0)" }), tagsItem((30..<40).map { "x\($0)" })]
        let failures = try await withDispatcher(
            [target(server: server, batch: .init(field: "tags", max: 30))], retry: RetryPolicy(attempts: 1)
        ) { await $0.deliver(items) }
        #expect(server.requests.count == 2)
        // Requests run concurrently: which one got the 400 decides which items fail.
        let refused = try #require(server.requests.last.map(tags(of:)))
        let expected = refused.count == 10 ? [2] : [0, 1]
        #expect(failures.map(\.item) == expected)
        #expect(failures.allSatisfy { $0.errorClass == "http-400" && $0.attempts == 1 && $0.target == "cdn" })
    }

    /// A worker built but never run releases its dispatcher unclosed: the connections
    /// close in the background, and debug builds do not stop on AsyncHTTPClient's check.
    @Test func aDispatcherReleasedWithoutShutdownClosesItsConnections() async throws {
        let server = try HTTPTestServer()
        var dispatcher: WebhookDispatcher? = WebhookDispatcher(targets: [target(server: server)], retry: quickRetry, logger: Logger(label: "webhook-test"))
        #expect(await dispatcher?.deliver([tagsItem(["a"])]).isEmpty == true)
        dispatcher = nil
        // Timer: time for the background close; a crash would end the run here.
        try await Task.sleep(for: .milliseconds(200))
        #expect(server.requests.count == 1)
    }

    @Test func itemsForAnUnknownTargetFailWithoutARequest() async throws {
        let server = try HTTPTestServer()
        let failures = try await withDispatcher([target(server: server)]) {
            await $0.deliver([tagsItem(["a"], target: "nowhere"), tagsItem(["b"])])
        }
        #expect(failures.map(\.item) == [0])
        #expect(failures.first?.errorClass == "unknown-target")
        #expect(server.requests.count == 1)
    }

    @Test func eachTargetHasAFewRequestsInFlightAndTargetsDoNotWait() async throws {
        let server = try HTTPTestServer()
        server.setDefaultReply(.answer(status: 200, delay: .milliseconds(200)))
        let items = (0..<12).map { tagsItem(["t\($0)"], target: "one") } + (0..<12).map { tagsItem(["t\($0)"], target: "two") }
        let started = ContinuousClock.now
        let failures = try await withDispatcher([target("one", server: server), target("two", server: server)]) {
            await $0.deliver(items)
        }
        let elapsed = ContinuousClock.now - started
        #expect(failures.isEmpty)
        #expect(server.requests.count == 24)
        let perTarget = WebhookDispatcher.concurrentRequestsPerTarget
        let peak = server.peakConcurrentRequests
        #expect(peak > perTarget && peak <= 2 * perTarget, "at most \(perTarget) per target, both targets at once: \(peak)")
        #expect(elapsed >= .milliseconds(600), "12 requests of 200 ms, \(perTarget) at a time: \(elapsed)")
    }

    @Test func aThousandItemsAreAllDelivered() async throws {
        let server = try HTTPTestServer()
        // Each event: one tag of its own and one shared by ten events.
        let items = (0..<1000).map { tagsItem(["own-\($0)", "shared-\($0 / 10)"]) }
        let metrics = AllValuesMetrics()
        let failures = try await withDispatcher([target(server: server, batch: .init(field: "tags", max: 30))], metrics: metrics) {
            await $0.deliver(items)
        }
        #expect(failures.isEmpty)
        let sent = server.requests.flatMap(tags(of:))
        #expect(sent.count == 1100, "1,000 own tags and 100 shared ones")
        #expect(Set(sent).count == 1100, "none twice")
        #expect(server.requests.count == 37, "1,100 tags, 30 per request")
        #expect(metrics.counter("invalidator_webhook_requests_total", ["target": "cdn", "result": "success"]) == 37)

        let unbatched = try HTTPTestServer()
        let unbatchedFailures = try await withDispatcher([target(server: unbatched)]) { await $0.deliver(items) }
        #expect(unbatchedFailures.isEmpty)
        #expect(unbatched.requests.count == 1000)
    }
}
