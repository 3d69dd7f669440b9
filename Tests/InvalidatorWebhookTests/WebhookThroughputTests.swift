import InvalidatorCore
import InvalidatorWebhooks
import TestSupport
import Testing

/// Items and requests per second to a local server, batching 30 tags per request.
/// Prints its figures; asserts only that everything arrived.
@Suite(.timeLimit(.minutes(2))) struct WebhookThroughputTests {
    @Test func batchedDeliveryThroughput() async throws {
        let server = try HTTPTestServer()
        // 30,000 events of 3 tags each, all distinct: 3,000 requests of 30 tags, in batches of 1,000 events.
        let batches = (0..<30).map { batch in
            (0..<1000).map { event in
                let id = batch * 1000 + event
                return tagsItem(["user:\(id)", "team:\(id)", "org:\(id)"])
            }
        }
        let started = ContinuousClock.now
        let failures = try await withDispatcher([target(server: server, batch: .init(field: "tags", max: 30))]) { dispatcher in
            var failures: [WebhookDeliveryFailure] = []
            for batch in batches { failures += await dispatcher.deliver(batch) }
            return failures
        }
        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        #expect(failures.isEmpty)
        #expect(server.requests.count == 3000)
        print("webhook throughput: 30000 items, 3000 requests in \(seconds) s: \(Int(30000 / seconds)) items/s, \(Int(3000 / seconds)) requests/s")
    }
}
