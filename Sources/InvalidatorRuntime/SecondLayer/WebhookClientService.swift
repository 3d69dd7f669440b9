import InvalidatorCore
import InvalidatorWebhooks
import Logging
import ServiceLifecycle

/// The worker's webhook client, as a service: it stays open while the sources
/// drain and closes once they have. First in the worker's group, so shut down last.
struct WebhookClientService: Service {
    let dispatcher: WebhookDispatcher

    /// A client for the config's `webhooks:`; nil when it has none.
    static func dispatcher(_ configuration: Configuration, logger: Logger) -> WebhookDispatcher? {
        configuration.webhooks.isEmpty ? nil : WebhookDispatcher(targets: configuration.webhooks, retry: configuration.retry, logger: logger)
    }

    func run() async throws {
        // Returns on graceful shutdown, throws on cancellation: the client closes either way.
        try? await gracefulShutdown()
        await dispatcher.shutdown()
    }
}
