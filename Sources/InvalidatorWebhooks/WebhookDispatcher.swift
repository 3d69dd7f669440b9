import CoreMetrics
import InvalidatorCore
import Logging

/// Delivers webhook items over HTTP: merges them per target into requests (see
/// ``WebhookTarget/Batch``), sends each target's requests concurrently, a few at a
/// time, with retries and a circuit breaker per target.
///
/// Logs name targets, their `redactedURL`, error codes and item counts: never a
/// header value, the URL itself or a body.
public final class WebhookDispatcher: WebhookDelivering {
    /// Requests in flight per target at most; different targets never wait for each other.
    public static let concurrentRequestsPerTarget = 4
    /// The longest `Retry-After` honoured; a longer one waits this long.
    public static let longestRetryAfter: Duration = .seconds(60)

    private let clients: [String: WebhookTargetClient]

    /// A dispatcher for a config's `webhooks:`, with its `retry`; nil when it has none.
    public static func forConfiguration(_ configuration: Configuration, logger: Logger) -> WebhookDispatcher? {
        configuration.webhooks.isEmpty ? nil : WebhookDispatcher(targets: configuration.webhooks, retry: configuration.retry, logger: logger)
    }

    /// - Parameter retry: for targets without a `retry` of their own.
    public convenience init(targets: [WebhookTarget], retry: RetryPolicy, logger: Logger) {
        self.init(targets: targets, retry: retry, circuitBreaker: CircuitBreakerPolicy(), logger: logger)
    }

    /// - Parameter metricsFactory: by default whatever `MetricsSystem` has; tests pass their own.
    package init(
        targets: [WebhookTarget], retry: RetryPolicy, circuitBreaker: CircuitBreakerPolicy,
        metricsFactory: any MetricsFactory = MetricsSystem.factory, logger: Logger
    ) {
        var clients: [String: WebhookTargetClient] = [:]
        for target in targets where clients[target.name] == nil {
            clients[target.name] = WebhookTargetClient(
                target: target, retry: target.retry ?? retry, circuitBreaker: circuitBreaker,
                metrics: WebhookTargetMetrics(target: target.name, factory: metricsFactory), logger: logger)
        }
        self.clients = clients
    }

    /// Closes every target's connections and waits until they are. Call once no
    /// `deliver` is running; a dispatcher released without it closes them in the background.
    public func shutdown() async {
        for client in clients.values {
            await client.shutdown()
        }
    }

    public func deliver(_ items: [WebhookItem]) async -> [WebhookDeliveryFailure] {
        var itemsByTarget: [String: [(index: Int, body: JSONValue)]] = [:]
        var failures: [WebhookDeliveryFailure] = []
        for (index, item) in items.enumerated() {
            guard let client = clients[item.target] else {
                failures.append(WebhookDeliveryFailure(
                    item: index, target: item.target, errorClass: WebhookError.Code.unknownTarget.description,
                    message: "no webhook target named \(item.target)", attempts: 0))
                continue
            }
            // Merged here, before batching, so the target's own entries count toward `batch.max`
            // and its secrets never leave memory.
            itemsByTarget[item.target, default: []].append((index, client.target.merging(item.body)))
        }
        let clients = clients
        await withTaskGroup(of: [WebhookDeliveryFailure].self) { group in
            for (name, targetItems) in itemsByTarget {
                guard let client = clients[name] else { continue }
                group.addTask { await Self.deliver(targetItems, with: client) }
            }
            for await targetFailures in group {
                failures += targetFailures
            }
        }
        return failures.sorted { $0.item < $1.item }
    }

    /// Sends one target's requests, `concurrentRequestsPerTarget` at a time. An item
    /// fails with the first failed request (in request order) that carried part of it.
    private static func deliver(_ items: [(index: Int, body: JSONValue)], with client: WebhookTargetClient) async -> [WebhookDeliveryFailure] {
        let requests = WebhookBatching.requests(for: items, batch: client.target.batch)
        var outcomes = [WebhookTargetClient.Outcome?](repeating: nil, count: requests.count)
        await withTaskGroup(of: (Int, WebhookTargetClient.Outcome).self) { group in
            var next = 0
            func startNext() {
                guard next < requests.count else { return }
                let index = next
                next += 1
                group.addTask { (index, await client.send(requests[index])) }
            }
            for _ in 0..<concurrentRequestsPerTarget { startNext() }
            for await (index, outcome) in group {
                outcomes[index] = outcome
                startNext()
            }
        }
        var failureByItem: [Int: WebhookDeliveryFailure] = [:]
        for (request, outcome) in zip(requests, outcomes) {
            guard let outcome, let error = outcome.error else { continue }
            for item in request.items where failureByItem[item] == nil {
                failureByItem[item] = WebhookDeliveryFailure(
                    item: item, target: client.target.name, errorClass: error.code.description, message: error.message,
                    attempts: outcome.attempts)
            }
        }
        return Array(failureByItem.values)
    }
}
