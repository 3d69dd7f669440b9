import InvalidatorCore
import Synchronization

/// Remembers recently enqueued precompute jobs so a burst of events asking for
/// the same warm-up enqueues it once. In memory, per pool.
final class PrecomputeDeduplicator: Sendable {
    private let window: Duration
    private let lastEnqueued = Mutex<[String: ContinuousClock.Instant]>([:])

    init(window: Duration) {
        self.window = window
    }

    /// Splits jobs into those to send now and those sent within the window.
    func admit(_ jobs: [PrecomputeJob]) -> (admitted: [PrecomputeJob], duplicates: [PrecomputeJob]) {
        guard !jobs.isEmpty, window > .zero else { return (jobs, []) }
        let now = ContinuousClock.now
        return lastEnqueued.withLock { lastEnqueued in
            lastEnqueued = lastEnqueued.filter { now - $0.value < window }
            var admitted: [PrecomputeJob] = []
            var duplicates: [PrecomputeJob] = []
            for job in jobs {
                if lastEnqueued[job.deduplicationKey] != nil {
                    duplicates.append(job)
                } else {
                    lastEnqueued[job.deduplicationKey] = now
                    admitted.append(job)
                }
            }
            return (admitted, duplicates)
        }
    }
}
