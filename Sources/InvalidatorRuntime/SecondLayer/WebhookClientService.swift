import InvalidatorCore
import ServiceLifecycle

/// The worker's webhook client, as a service: it stays open while the sources
/// drain and closes once they have. First in the worker's group, so shut down last.
struct WebhookClientService: Service {
    let client: any WebhookDelivering

    func run() async throws {
        // Returns on graceful shutdown, throws on cancellation: the client closes either way.
        try? await gracefulShutdown()
        await client.shutdown()
    }
}
