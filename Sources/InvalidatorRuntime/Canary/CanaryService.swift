import InvalidatorCore
import Logging
import ServiceLifecycle
import Synchronization

/// Runs a canary round every `canary.interval` while the worker runs, records its
/// figures, logs failed rounds and recoveries, and keeps per source the count of
/// consecutive failed rounds behind `/healthz` (`canary.fail_healthz_after`).
package final class CanaryService: Service, Sendable {
    package let prober: CanaryProber
    private let metrics: WorkerMetrics
    private let logger: Logger
    /// Consecutive failed rounds per source label.
    private let failureStreaks = Mutex<[String: Int]>([:])

    package init(prober: CanaryProber, metrics: WorkerMetrics, logger: Logger) {
        self.prober = prober
        self.metrics = metrics
        self.logger = logger
    }

    package func run() async throws {
        await cancelWhenGracefulShutdown {
            // Timer: the canary's period. The first round waits one period too, for the
            // sources to subscribe (a canary published before would reach nobody); a round
            // longer than the period starts the next at once.
            var next = ContinuousClock.now + self.prober.canary.interval
            while !Task.isCancelled {
                try? await Task.sleep(until: next)
                guard !Task.isCancelled else { break }
                next = .now + self.prober.canary.interval
                self.record(await self.prober.round())
            }
        }
        await prober.close()
    }

    /// `/healthz` lines of the sources that failed `fail_healthz_after` rounds in a row; empty when off.
    package var healthProblems: [String] {
        let threshold = prober.canary.failHealthzAfter
        guard threshold > 0 else { return [] }
        return failureStreaks.withLock { $0 }.filter { $0.value >= threshold }.sorted { $0.key < $1.key }.map {
            "canary \($0.key): \($0.value) consecutive rounds failed (fail_healthz_after: \(threshold))"
        }
    }

    private func record(_ results: [CanaryResult]) {
        for result in results {
            metrics.canary(result)
            if let failure = result.failure {
                logger.warning("canary round failed", metadata: [
                    "source": "\(result.source)", "pool": "\(result.pool)", "reason": "\(failure)",
                ])
            }
        }
        for source in Set(results.map(\.source.description)) {
            let passed = results.allSatisfy { $0.source.description != source || $0.passed }
            let previous = failureStreaks.withLock { streaks in
                defer { streaks[source] = passed ? 0 : (streaks[source] ?? 0) + 1 }
                return streaks[source] ?? 0
            }
            if passed, previous > 0 {
                logger.info("canary recovered", metadata: ["source": "\(source)", "failed_rounds": "\(previous)"])
            }
        }
    }
}
