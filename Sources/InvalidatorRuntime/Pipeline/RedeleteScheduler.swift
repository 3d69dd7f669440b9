import InvalidatorCore

/// Runs the delayed second deletes of `redelete_after` for one source, inside that
/// source's task tree (``run()`` is a child of its driver). An event is finished only
/// after its redeletes ran (or were dead-lettered), so a crash before then redelivers
/// the event instead of losing the second delete.
///
/// Redeletes due together run together: everything due when the timer fires goes
/// to the executor in one call, so one pipeline per node instead of one per event.
///
/// Pending redeletes are bounded: while `maxPendingEvents` events wait for theirs,
/// scheduling another waits (and so does the source's loop), rather than the queue
/// growing with the input rate times the delay.
final class RedeleteScheduler: Sendable {
    /// Events with redeletes pending at which scheduling waits: each holds its event
    /// (about 1 KB) until its redeletes ran, so about 100 MB per source; reached only
    /// by sustained rates times long delays (28 events/s with a 1 h delay, 200,000/s
    /// with 500 ms).
    static let defaultMaxPendingEvents = 100_000

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

    /// The redeletes of one delay, in the order they were scheduled, which is the
    /// order they fall due: appending keeps a lane sorted, so scheduling costs the
    /// same however long the queue.
    private struct Lane: Sendable {
        private var items: [Due] = []
        /// Items before `head` have been taken.
        private var head = 0

        var first: Due? { head < items.count ? items[head] : nil }
        var isEmpty: Bool { head == items.count }

        mutating func append(_ due: Due) {
            items.append(due)
        }

        /// Takes the items due at `now`, oldest first.
        mutating func takeDue(at now: ContinuousClock.Instant) -> [Due] {
            let start = head
            while head < items.count, items[head].at <= now { head += 1 }
            let taken = Array(items[start..<head])
            // Taken items are dropped once they are half the storage: amortized O(1) each.
            if head > items.count / 2 {
                items.removeFirst(head)
                head = 0
            }
            return taken
        }
    }

    private struct State: Sendable {
        /// One lane per delay; rules have few distinct delays.
        var lanes: [Duration: Lane] = [:]
        var tickets: [Int: Ticket] = [:]
        var nextTicket = 0

        /// When the earliest redelete falls due; nil when none is scheduled.
        var nextDue: ContinuousClock.Instant? {
            lanes.values.lazy.compactMap(\.first?.at).min()
        }
    }

    private let executor: BatchExecutor
    private let maxPendingEvents: Int
    private let state = Guarded(State())
    /// How often a loop waiting for room beats its heartbeat.
    private static let waitingBeat: Duration = .milliseconds(500)

    init(executor: BatchExecutor, maxPendingEvents: Int = RedeleteScheduler.defaultMaxPendingEvents) {
        self.executor = executor
        self.maxPendingEvents = maxPendingEvents
    }

    /// Schedules the groups (pool, redelete) of one event, first waiting while
    /// `maxPendingEvents` events have redeletes pending (beating `heartbeat` meanwhile).
    /// `finished` receives the node failures once every group ran; it is not called
    /// when the run stops first.
    func schedule(
        _ groups: [(pool: String, redelete: Redelete)], heartbeat: Heartbeat?,
        finished: @escaping @Sendable ([NodeFailure]) async -> Void
    ) async {
        guard !groups.isEmpty else { return }
        await waitForRoom(heartbeat: heartbeat)
        state.withLock { state in
            // Read under the lock, so each lane's instants only grow.
            let now = ContinuousClock.now
            let ticket = state.nextTicket
            state.nextTicket += 1
            state.tickets[ticket] = Ticket(remaining: groups.count, finished: finished)
            for group in groups {
                let due = Due(at: now + group.redelete.after, pool: group.pool, redelete: group.redelete, ticket: ticket)
                state.lanes[group.redelete.after, default: Lane()].append(due)
            }
        }
    }

    /// Returns once fewer than `maxPendingEvents` events have redeletes pending, or
    /// when cancelled (the event is then scheduled anyway: shutdown drains or drops it,
    /// and it is not committed until its redeletes ran).
    private func waitForRoom(heartbeat: Heartbeat?) async {
        while !Task.isCancelled {
            let pending = state.read { $0.tickets.count }
            guard pending >= maxPendingEvents else { return }
            heartbeat?.beat(.waitingForRedeletes, detail: "\(pending) events pending, bound \(maxPendingEvents)")
            let limit = maxPendingEvents
            await state.wait(until: { $0.tickets.count < limit }, deadline: ContinuousClock.now + Self.waitingBeat)
        }
    }

    /// Runs redeletes as they fall due, until cancelled.
    func run() async {
        while !Task.isCancelled {
            let next = state.read { $0.nextDue }
            guard let next else {
                await state.wait(until: { $0.nextDue != nil })
                continue
            }
            if next > ContinuousClock.now {
                // Wakes when due, or when an earlier redelete is scheduled.
                await state.wait(until: { ($0.nextDue ?? next) < next }, deadline: next)
                continue
            }
            await runDue()
        }
    }

    private func runDue() async {
        let now = ContinuousClock.now
        let due = state.withLock { state -> [Due] in
            var due: [Due] = []
            for delay in Array(state.lanes.keys) {
                due += state.lanes[delay]?.takeDue(at: now) ?? []
                if state.lanes[delay]?.isEmpty == true { state.lanes[delay] = nil }
            }
            // In the order they fell due, across delays.
            return due.sorted { $0.at < $1.at }
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
