import Logging
import ServiceLifecycle

/// Keeps `invalidator_dead_letters_remaining` current in a running worker whose
/// dead letters go to a Redis stream: the stream's XLEN at start, every 15 s, and
/// after each write. (For a Kafka topic store the gauge comes from `replay` runs.)
/// Counting never affects the worker: a failure is logged at debug level and the
/// gauge keeps its last value.
final class DeadLetterBacklog: Service, Sendable {
    static let interval: Duration = .seconds(15)
    private let reader: DeadLetterReader
    private let metrics: WorkerMetrics
    private let logger: Logger
    /// Count requests; one waiting is enough, however many writes asked meanwhile.
    private let requests: AsyncStream<Void>
    private let requester: AsyncStream<Void>.Continuation

    /// nil unless `store` is a Redis stream.
    init?(store: any DeadLetterStore, metrics: WorkerMetrics, logger: Logger) {
        guard let store = store as? RedisStreamDeadLetterStore else { return nil }
        reader = DeadLetterReader(store: store)
        self.metrics = metrics
        self.logger = logger
        (requests, requester) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// Asks for a fresh count; returns at once.
    func refresh() {
        requester.yield()
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { tasks in
                tasks.addTask {
                    while !Task.isCancelled {
                        self.refresh()
                        // Timer: the XLEN refresh period.
                        try? await Task.sleep(for: Self.interval)
                    }
                }
                // Ends when cancelled.
                for await _ in self.requests {
                    await self.count()
                }
                tasks.cancelAll()
            }
        }
    }

    private func count() async {
        do {
            DeadLetterMetrics.recordRemaining(try await reader.count(), factory: metrics.factory)
        } catch {
            logger.debug("cannot count dead letters", metadata: ["stream": "\(reader.stream)", "error": "\(error)"])
        }
    }
}

/// The worker's dead-letter store: asks the backlog for a fresh count after each durable write.
struct BacklogCountingStore: DeadLetterStore {
    let store: any DeadLetterStore
    let backlog: DeadLetterBacklog

    func write(_ records: [DeadLetter]) async throws {
        try await store.write(records)
        backlog.refresh()
    }
}
