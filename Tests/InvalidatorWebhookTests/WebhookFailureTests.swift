import Foundation
import InvalidatorCore
import InvalidatorWebhooks
import Logging
import TestDoubles
import TestSupport
import Testing

/// Which failures are retried and how, the circuit breaker, and what logs show.
@Suite(.timeLimit(.minutes(2))) struct WebhookFailureTests {
    @Test func serverErrorsAreRetried() async throws {
        let server = try HTTPTestServer()
        server.script([.answer(status: 500)])
        let metrics = AllValuesMetrics()
        let failures = try await withDispatcher([target(server: server)], metrics: metrics) { await $0.deliver([tagsItem(["a"])]) }
        #expect(failures.isEmpty)
        #expect(server.requests.count == 2)
        #expect(metrics.counter("invalidator_webhook_retries_total", ["target": "cdn"]) == 1)
        #expect(metrics.counter("invalidator_webhook_requests_total", ["target": "cdn", "result": "failure"]) == 1)
        #expect(metrics.counter("invalidator_webhook_requests_total", ["target": "cdn", "result": "success"]) == 1)
    }

    @Test func retryAfterInSecondsIsHonoured() async throws {
        let server = try HTTPTestServer()
        server.script([.answer(status: 429, headers: ["Retry-After": "1"])])
        let failures = try await withDispatcher([target(server: server)]) { await $0.deliver([tagsItem(["a"])]) }
        #expect(failures.isEmpty)
        let requests = server.requests
        try #require(requests.count == 2)
        #expect(requests[1].receivedAt - requests[0].receivedAt >= .milliseconds(950), "the policy's backoff is 50 ms at most")
    }

    @Test func retryAfterAsADateIsHonoured() async throws {
        let server = try HTTPTestServer()
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        // Three seconds ahead at a one-second resolution (the fraction is cut off); however long the
        // dispatcher took to send the first request, the second must not come before that date.
        let retryDate = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + 3).rounded(.down))
        server.script([.answer(status: 503, headers: ["Retry-After": formatter.string(from: retryDate)])])
        let failures = try await withDispatcher([target(server: server)]) { await $0.deliver([tagsItem(["a"])]) }
        #expect(failures.isEmpty)
        try #require(server.requests.count == 2)
        #expect(Date() >= retryDate.addingTimeInterval(-0.05), "the retry waited for the date")
    }

    /// A server's absurd `Retry-After` (negative, past Int, not a date) neither traps nor
    /// stalls: each is ignored or read as no wait, and the policy's backoff applies.
    @Test func absurdRetryAfterValuesFallBackToTheBackoff() async throws {
        let server = try HTTPTestServer()
        server.script(["-5", "99999999999999999999", "Wed, 99 Foo 2026 99:99:99 GMT"].map {
            .answer(status: 503, headers: ["Retry-After": $0])
        })
        let start = ContinuousClock.now
        let failures = try await withDispatcher([target(server: server)], retry: RetryPolicy(attempts: 4, initialBackoff: .milliseconds(10), maxBackoff: .milliseconds(50))) {
            await $0.deliver([tagsItem(["a"])])
        }
        #expect(failures.isEmpty)
        #expect(server.requests.count == 4)
        #expect(ContinuousClock.now - start < .seconds(5))
    }

    @Test(arguments: [408, 429, 500, 502, 503, 504])
    func retriableStatuses(status: Int) async throws {
        let server = try HTTPTestServer()
        server.script([.answer(status: status)])
        let failures = try await withDispatcher([target(server: server)]) { await $0.deliver([tagsItem(["a"])]) }
        #expect(failures.isEmpty)
        #expect(server.requests.count == 2)
    }

    @Test(arguments: [400, 401, 403, 409, 413, 422])
    func finalStatuses(status: Int) async throws {
        let server = try HTTPTestServer()
        server.script([.answer(status: status)])
        let failures = try await withDispatcher([target(server: server)]) { await $0.deliver([tagsItem(["a"])]) }
        #expect(failures.map(\.errorClass) == ["http-\(status)"])
        #expect(server.requests.count == 1)
    }

    @Test func otherClientErrorsFailAtOnce() async throws {
        let server = try HTTPTestServer()
        server.setDefaultReply(.answer(status: 404))
        let failures = try await withDispatcher([target(server: server)]) { await $0.deliver([tagsItem(["a"])]) }
        #expect(server.requests.count == 1)
        #expect(failures.map(\.errorClass) == ["http-404"])
        #expect(failures.map(\.attempts) == [1])
    }

    @Test func anUnansweredRequestTimesOutAndIsRetried() async throws {
        let server = try HTTPTestServer()
        server.script([.hang])
        // Long enough that the retry's answer, from a local server, always comes in time.
        let timeout = Duration.seconds(2)
        let started = ContinuousClock.now
        let failures = try await withDispatcher([target(server: server, timeout: timeout)]) { await $0.deliver([tagsItem(["a"])]) }
        #expect(failures.isEmpty)
        #expect(server.requests.count == 2)
        #expect(ContinuousClock.now - started >= timeout)

        let silent = try HTTPTestServer()
        silent.setDefaultReply(.hang)
        let silentStarted = ContinuousClock.now
        let timedOut = try await withDispatcher([target(server: silent, timeout: timeout)], retry: RetryPolicy(attempts: 2)) {
            await $0.deliver([tagsItem(["a"])])
        }
        let elapsed = ContinuousClock.now - silentStarted
        #expect(timedOut.map(\.errorClass) == ["timeout"])
        #expect(timedOut.map(\.attempts) == [2])
        #expect(elapsed >= timeout * 2 && elapsed < .seconds(20), "each attempt gives up after the timeout: \(elapsed)")
    }

    @Test func aConnectionClosedMidAnswerIsRetried() async throws {
        let server = try HTTPTestServer()
        server.script([.closeMidResponse])
        let failures = try await withDispatcher([target(server: server)]) { await $0.deliver([tagsItem(["a"])]) }
        #expect(failures.isEmpty)
        #expect(server.requests.count == 2)
    }

    @Test func nothingListeningIsAConnectionFailure() async throws {
        let port = try RedisServer.freePort()
        let nowhere = WebhookTarget(name: "cdn", url: "http://127.0.0.1:\(port)/purge")
        let failures = try await withDispatcher([nowhere]) { await $0.deliver([tagsItem(["a"])]) }
        #expect(failures.map(\.errorClass) == ["connection"])
        #expect(failures.map(\.attempts) == [quickRetry.attempts])
    }

    @Test func aURLThatCannotBeRequestedFailsAtOnce() async throws {
        let failures = try await withDispatcher([WebhookTarget(name: "cdn", url: "ftp://example.com/purge")]) {
            await $0.deliver([tagsItem(["a"])])
        }
        #expect(failures.map(\.errorClass) == ["invalid-url"])
        #expect(failures.map(\.attempts) == [1])
    }

    @Test func theCircuitOpensAfterRepeatedFailuresAndRecovers() async throws {
        let server = try HTTPTestServer()
        server.setDefaultReply(.answer(status: 503))
        // A cool-down that outlasts the two failures and the deliveries while open on any machine.
        let breaker = CircuitBreakerPolicy(failureThreshold: 2, coolDown: .seconds(3))
        try await withDispatcher([target(server: server)], retry: RetryPolicy(attempts: 1), circuitBreaker: breaker) { dispatcher in
            for _ in 0..<2 {
                #expect(await dispatcher.deliver([tagsItem(["a"])]).map(\.errorClass) == ["http-503"])
            }
            let whileOpen = await dispatcher.deliver([tagsItem(["b"]), tagsItem(["c"])])
            #expect(whileOpen.map(\.errorClass) == ["circuit-open", "circuit-open"])
            #expect(whileOpen.map(\.attempts) == [0, 0])
            #expect(server.requests.count == 2, "no request while the circuit is open")

            server.setDefaultReply(.ok)
            try await Task.sleep(for: .milliseconds(3100))
            #expect(await dispatcher.deliver([tagsItem(["d"])]).isEmpty, "the half-open probe succeeds")
            #expect(await dispatcher.deliver([tagsItem(["e"])]).isEmpty)
            #expect(server.requests.count == 4)
        }
    }

    @Test func clientErrorsDoNotOpenTheCircuit() async throws {
        let server = try HTTPTestServer()
        server.setDefaultReply(.answer(status: 422))
        let breaker = CircuitBreakerPolicy(failureThreshold: 1, coolDown: .seconds(30))
        try await withDispatcher([target(server: server)], circuitBreaker: breaker) { dispatcher in
            for _ in 0..<3 {
                #expect(await dispatcher.deliver([tagsItem(["a"])]).map(\.errorClass) == ["http-422"])
            }
        }
        #expect(server.requests.count == 3)
    }

    @Test func secretsNeverReachTheLogs() async throws {
        let server = try HTTPTestServer()
        server.setDefaultReply(.answer(status: 500))
        let secret = "hunter2-token"
        var purge = WebhookTarget(name: "cdn", url: server.baseURL + "/purge?key=\(secret)", redactedURL: server.baseURL + "/purge?key=***")
        purge.headers = [.init(name: "Authorization", value: "Bearer \(secret)")]
        let capture = LogCapture()
        var logger = Logger(label: "webhook-test") { _ in CapturingLogHandler(capture: capture) }
        logger.logLevel = .trace
        let failures = try await withDispatcher([purge], logger: logger) {
            await $0.deliver([tagsItem(["body-\(secret)"])])
        }
        #expect(failures.map(\.errorClass) == ["http-500"])
        #expect(server.requests.first?.headers["authorization"] == "Bearer \(secret)", "the secret was sent")
        let logged = capture.lines.joined(separator: "\n")
        #expect(capture.lines.contains { $0.hasPrefix("warning webhook request failed") && $0.contains("key=***") })
        #expect(!logged.contains(secret), "a secret leaked into the logs: \(logged)")
        #expect(!failures.map(\.message).joined().contains(secret))
        #expect(!"\(purge)".contains(secret))
    }
}
