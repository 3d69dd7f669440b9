import Logging
import ServiceLifecycle

/// Watches a running worker's Redis stream of dead letters:
/// - keeps `invalidator_dead_letters_remaining` (`XLEN`) and
///   `invalidator_dead_letter_store_bytes` (`MEMORY USAGE`, asked only when the
///   count changed) current: at start, every 60 s, and after each write (for a Kafka
///   topic store the count comes from `replay` runs). An idle worker's node sees
///   one `XLEN` a minute from here;
/// - once, at its first successful contact, logs a warning when the node may evict
///   the stream or loses it on restart (``DeadLetterNodeSettings``).
///
/// Watching never affects the worker: a failure is logged at debug level and the
/// gauges keep their last values.
final class DeadLetterBacklog: Service, Sendable {
    static let interval: Duration = .seconds(60)
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
                var inspected = false
                var measuredAt: Int?
                // Ends when cancelled.
                for await _ in self.requests {
                    if !inspected { inspected = await self.inspectNode() }
                    measuredAt = await self.count(memoryMeasuredAt: measuredAt)
                }
                tasks.cancelAll()
            }
        }
    }

    /// Sets the count, and the memory use when the count is not `memoryMeasuredAt`
    /// (the count it was last measured at). Returns the count memory was measured at now.
    private func count(memoryMeasuredAt: Int?) async -> Int? {
        do {
            let count = try await reader.count()
            DeadLetterMetrics.recordRemaining(count, factory: metrics.factory)
            guard memoryMeasuredAt != count else { return count }
            DeadLetterMetrics.recordStoreBytes(try await reader.memoryUsage(), factory: metrics.factory)
            return count
        } catch {
            logger.debug("cannot count dead letters", metadata: ["stream": "\(reader.stream)", "error": "\(error)"])
            return memoryMeasuredAt
        }
    }

    /// Logs what puts the dead letters at risk on their node; false when the node
    /// could not be reached (tried again at the next count).
    private func inspectNode() async -> Bool {
        let settings: DeadLetterNodeSettings
        do {
            settings = try await DeadLetterNodeSettings.read(pool: reader.pool, stream: reader.stream)
        } catch {
            logger.debug("cannot read the dead-letter node's settings", metadata: ["stream": "\(reader.stream)", "error": "\(error)"])
            return false
        }
        let metadata: Logger.Metadata = ["stream": "\(settings.stream)", "node": "\(settings.node)", "settings": "\(settings.summary)"]
        for warning in settings.warnings {
            logger.warning("dead letters at risk on their node", metadata: metadata.merging(["risk": "\(warning)"]) { $1 })
        }
        if settings.hasUnknown {
            logger.notice("cannot read the dead-letter node's eviction policy or persistence; whether it may evict or lose dead letters is unknown", metadata: metadata)
        }
        return true
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
