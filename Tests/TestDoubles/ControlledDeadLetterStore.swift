import InvalidatorRuntime
import Synchronization

/// A dead-letter store whose writes work, fail (the pipeline retries) or hang
/// (never return, like a call without a timeout), as the test sets.
package final class ControlledDeadLetterStore: DeadLetterStore {
    package enum Mode { case works, fails, hangs }
    package struct Down: Error {}
    private let state = Mutex<(mode: Mode, attempts: Int, stored: Int)>((.works, 0, 0))

    package init() {}

    package var mode: Mode {
        get { state.withLock { $0.mode } }
        set { state.withLock { $0.mode = newValue } }
    }
    /// Writes that returned or threw.
    package var attempts: Int { state.withLock { $0.attempts } }
    /// Records stored.
    package var stored: Int { state.withLock { $0.stored } }

    package func write(_ records: [DeadLetter]) async throws {
        while mode == .hangs {
            try await Task.sleep(for: .milliseconds(10))
        }
        try state.withLock { state in
            state.attempts += 1
            guard state.mode == .works else { throw Down() }
            state.stored += records.count
        }
    }
}
