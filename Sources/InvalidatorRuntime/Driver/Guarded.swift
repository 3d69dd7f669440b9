import Synchronization

/// State behind a lock, and tasks that wait for a condition on it. Every change
/// made through ``withLock(_:)`` wakes the waiters, which check their condition
/// again: a wait ends on the change itself, never on a polling interval.
final class Guarded<State: Sendable>: Sendable {
    private struct Box {
        var state: State
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        /// Waiters woken (by their deadline or cancellation) before they had registered.
        var woken: Set<Int> = []
        var nextID = 0
    }

    private let box: Mutex<Box>

    init(_ state: State) {
        box = Mutex(Box(state: state))
    }

    /// Reads the state without waking anyone.
    func read<Result>(_ body: (State) -> Result) -> Result {
        box.withLock { body($0.state) }
    }

    /// Changes the state and wakes every waiter. Waiters resume after the lock is released.
    func withLock<Result>(_ body: (inout State) -> Result) -> Result {
        let (result, waiters) = box.withLock { box in
            let result = body(&box.state)
            guard !box.waiters.isEmpty else { return (result, [CheckedContinuation<Void, Never>]()) }
            let waiters = Array(box.waiters.values)
            box.waiters.removeAll()
            return (result, waiters)
        }
        for waiter in waiters { waiter.resume() }
        return result
    }

    /// Waits until `condition` holds, `deadline` passes, or the task is cancelled.
    /// - Returns: whether the condition holds at the end.
    @discardableResult
    func wait(until condition: (State) -> Bool, deadline: ContinuousClock.Instant? = nil) async -> Bool {
        let id = box.withLock { box in
            box.nextID += 1
            return box.nextID
        }
        let satisfied = await withTaskGroup(of: Void.self) { timer in
            if let deadline {
                // The deadline is a real timer: it wakes this waiter once, when due.
                timer.addTask {
                    try? await Task.sleep(until: deadline, clock: .continuous)
                    self.wake(id)
                }
            }
            let satisfied = await waitLoop(id, until: condition, deadline: deadline)
            timer.cancelAll()
            await timer.waitForAll()
            return satisfied
        }
        // The timer has ended: a wake it left behind can be dropped now.
        _ = box.withLock { $0.woken.remove(id) }
        return satisfied
    }

    private func waitLoop(_ id: Int, until condition: (State) -> Bool, deadline: ContinuousClock.Instant?) async -> Bool {
        while true {
            if read(condition) { return true }
            if Task.isCancelled { return false }
            if let deadline, ContinuousClock.now >= deadline { return false }
            await withTaskCancellationHandler {
                await sleep(id, unless: condition)
            } onCancel: {
                wake(id)
            }
        }
    }

    /// Suspends until the next change, unless `condition` already holds or the waiter was woken.
    private func sleep(_ id: Int, unless condition: (State) -> Bool) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = box.withLock { box -> Bool in
                if condition(box.state) || box.woken.remove(id) != nil { return true }
                box.waiters[id] = continuation
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    private func wake(_ id: Int) {
        let waiter = box.withLock { box -> CheckedContinuation<Void, Never>? in
            if let waiter = box.waiters.removeValue(forKey: id) { return waiter }
            box.woken.insert(id)
            return nil
        }
        waiter?.resume()
    }
}

/// A stop flag set by graceful shutdown or cancellation, and waits that end the moment it is set.
final class StopSignal: Sendable {
    private let flag = Guarded(false)

    var isSet: Bool { flag.read { $0 } }

    func set() {
        flag.withLock { $0 = true }
    }

    /// Sleeps for `duration`, or less when the flag is set or the task is cancelled.
    func pause(for duration: Duration) async {
        await flag.wait(until: { $0 }, deadline: ContinuousClock.now + duration)
    }
}
