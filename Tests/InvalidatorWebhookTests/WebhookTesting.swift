import InvalidatorCore
import InvalidatorWebhooks
import Logging
import TestDoubles
import TestSupport

/// A target sending to `server` at `path`.
func target(
    _ name: String = "cdn", server: HTTPTestServer, path: String = "/purge", batch: WebhookTarget.Batch? = nil,
    timeout: Duration = .seconds(10)
) -> WebhookTarget {
    var target = WebhookTarget(name: name, url: server.baseURL + path)
    target.batch = batch
    target.timeout = timeout
    return target
}

/// Few attempts with short waits, so failure paths finish quickly.
let quickRetry = RetryPolicy(attempts: 3, initialBackoff: .milliseconds(10), maxBackoff: .milliseconds(50))

/// An item whose body is `{"site": site, "tags": tags}`.
func tagsItem(_ tags: [String], site: String = "www", target: String = "cdn") -> WebhookItem {
    WebhookItem(target: target, body: tagsBody(tags, site: site), rule: "purge")
}

func tagsBody(_ tags: [String], site: String = "www") -> JSONValue {
    .object(JSONObject([
        .init(key: "site", value: .string(site)),
        .init(key: "tags", value: .array(tags.map { .string($0) })),
    ]))
}

/// The `tags` array of a request's JSON body; empty when it has none.
func tags(of request: HTTPTestServer.Request) -> [String] {
    guard let body = try? JSONParser.parse(bytes: request.body) else { return [] }
    return body.objectValue?["tags"]?.arrayValue?.compactMap(\.stringValue) ?? []
}

/// A dispatcher for `targets`, shut down after `body`.
func withDispatcher<T>(
    _ targets: [WebhookTarget], retry: RetryPolicy = quickRetry, circuitBreaker: CircuitBreakerPolicy = CircuitBreakerPolicy(),
    metrics: AllValuesMetrics = AllValuesMetrics(), logger: Logger = Logger(label: "webhook-test"),
    _ body: (WebhookDispatcher) async throws -> T
) async throws -> T {
    let dispatcher = WebhookDispatcher(
        targets: targets, retry: retry, circuitBreaker: circuitBreaker, metricsFactory: metrics, logger: logger)
    do {
        let result = try await body(dispatcher)
        await dispatcher.shutdown()
        return result
    } catch {
        await dispatcher.shutdown()
        throw error
    }
}
