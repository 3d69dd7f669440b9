import InvalidatorCore

/// Runs the delayed second deletes of `redelete_after` for one source, inside that
/// source's task tree (``run()`` is a child of its driver). An event is finished only
/// after its redeletes ran (or were dead-lettered), so a crash before then redelivers
/// the event instead of losing the second delete.
///
/// Redeletes due together run together: everything due when the timer fires goes
/// to the executor in one call, so one pipeline per node instead of one per event.
final class RedeleteScheduler: Sendable {
    private struct Due: Sendable {
        var at: ContinuousClock.Instant
        var pool: String
        var redelete: Redelete
        var ticket: Int
    }

    /// One event's redeletes: how many groups are still to run, and what failed.
    private struct Ticket: Sendable {
        var remaining: Int
        var failures: [NodeFailure] = []
        var finished: @Sendable ([NodeFailure]) async -> Void
    }

    private struct State: Sendable {
        /// Sorted by `at`.
        var queue: [Due] = []
        var tickets: [Int: Ticket] = [:]
        var nextTicket = 0
    }

    private let executor: BatchExecutor
    private let state = Guarded(State())

    init(executor: BatchExecutor) {
        self.executor = executor
    }

    /// Schedules the groups (pool, redelete) of one event. `finished` receives the
    /// node failures once every group ran; it is not called when the run stops first.
    func schedule(_ groups: [(pool: String, redelete: Redelete)], finished: @escaping @Sendable ([NodeFailure]) async -> Void) {
        guard !groups.isEmpty else { return }
        let now = ContinuousClock.now
        state.withLock { state in
            let ticket = state.nextTicket
            state.nextTicket += 1
            state.tickets[ticket] = Ticket(remaining: groups.count, finished: finished)
            for group in groups {
                let due = Due(at: now + group.redelete.after, pool: group.pool, redelete: group.redelete, ticket: ticket)
                let index = state.queue.firstIndex { $0.at > due.at } ?? state.queue.endIndex
                state.queue.insert(due, at: index)
            }
        }
    }

    /// Runs redeletes as they fall due, until cancelled.
    func run() async {
        while !Task.isCancelled {
            let next = state.read { $0.queue.first?.at }
            guard let next else {
                await state.wait(until: { !$0.queue.isEmpty })
                continue
            }
            if next > ContinuousClock.now {
                // Wakes when due, or when an earlier redelete is scheduled.
                await state.wait(until: { ($0.queue.first?.at ?? next) < next }, deadline: next)
                continue
            }
            await runDue()
        }
    }

    private func runDue() async {
        let now = ContinuousClock.now
        let due = state.withLock { state -> [Due] in
            let count = state.queue.firstIndex { $0.at > now } ?? state.queue.count
            defer { state.queue.removeFirst(count) }
            return Array(state.queue.prefix(count))
        }
        let plans = due.map { item in
            [PoolPlan(pool: item.pool, operations: item.redelete.keys.map { PlannedOperation(.delete(key: $0), rule: item.redelete.rule) })]
        }
        let failures = await executor.execute(plans)
        let finished = state.withLock { state -> [(Ticket, [NodeFailure])] in
            var finished: [(Ticket, [NodeFailure])] = []
            for (index, item) in due.enumerated() {
                guard var ticket = state.tickets[item.ticket] else { continue }
                ticket.failures += failures[index] ?? []
                ticket.remaining -= 1
                if ticket.remaining == 0 {
                    state.tickets[item.ticket] = nil
                    finished.append((ticket, ticket.failures))
                } else {
                    state.tickets[item.ticket] = ticket
                }
            }
            return finished
        }
        for (ticket, failures) in finished {
            await ticket.finished(failures)
        }
    }

    /// Waits until every scheduled redelete ran, or until `deadline`.
    /// - Returns: true when none is left.
    func drain(until deadline: ContinuousClock.Instant) async -> Bool {
        await state.wait(until: { $0.tickets.isEmpty }, deadline: deadline)
    }
}
