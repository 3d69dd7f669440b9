import InvalidatorCore
import Synchronization

/// Runs the delayed second deletes of `redelete_after`. Each scheduled event is
/// finished only after its redeletes ran (or were dead-lettered), so a crash
/// before then redelivers the event instead of losing the second delete.
public final class RedeleteScheduler: Sendable {
    private let executor: BatchExecutor
    private let tasks = Mutex<[Int: Task<Void, Never>]>([:])
    private let nextID = Atomic<Int>(0)

    init(executor: BatchExecutor) {
        self.executor = executor
    }

    public var pendingCount: Int {
        tasks.withLock { $0.count }
    }

    /// Schedules the groups (pool, redelete) for one event. `finished` receives
    /// the node failures, once every group ran; it is not called when shutdown
    /// cancels the wait.
    func schedule(
        _ groups: [(pool: String, redelete: Redelete)], event: IncomingEvent,
        finished: @escaping @Sendable ([NodeFailure]) async -> Void
    ) {
        let id = nextID.add(1, ordering: .relaxed).newValue
        let start = ContinuousClock.now
        let ordered = groups.sorted { $0.redelete.after < $1.redelete.after }
        // Registered while holding the lock, so a task that ends at once cannot
        // remove its entry before it exists.
        tasks.withLock { registry in registry[id] = Task { [self] in
            defer { _ = tasks.withLock { $0.removeValue(forKey: id) } }
            var failures: [NodeFailure] = []
            for (pool, redelete) in ordered {
                do {
                    try await Task.sleep(until: start + redelete.after, clock: .continuous)
                } catch {
                    return
                }
                let operations = redelete.keys.map { PlannedOperation(.delete(key: $0), rule: redelete.rule) }
                failures += await executor.execute([[PoolPlan(pool: pool, operations: operations)]])[0] ?? []
            }
            await finished(failures)
        } }
    }

    /// Waits for scheduled redeletes until `deadline`, then cancels the rest.
    /// Returns true when all of them finished.
    public func drain(until deadline: ContinuousClock.Instant) async -> Bool {
        while ContinuousClock.now < deadline, !Task.isCancelled {
            if pendingCount == 0 { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        let remaining = tasks.withLock { Array($0.values) }
        for task in remaining { task.cancel() }
        return remaining.isEmpty
    }
}
