import InvalidatorCore

/// The CPU-bound half of processing a batch: decodes and plans its events, and
/// builds the dead-letter records of those that cannot be applied. No I/O, so a
/// source can run it for the next batch while the previous one is applied, and
/// the fuzz targets can run it on any bytes.
package struct BatchPreparer: Sendable {
    /// Written into every record, to tell which worker failed.
    let workerID: String

    package init(workerID: String) {
        self.workerID = workerID
    }

    /// Prepares `events`, a slice of `batch`; event indexes are positions in `batch`.
    package func prepare(_ events: ArraySlice<IncomingEvent>, in batch: [IncomingEvent], planner: Planner, now: String) -> EventPipeline.PreparedBatch {
        var plans: [Plan] = []
        var planEventIndexes: [Int] = []
        var records: [DeadLetter] = []
        plans.reserveCapacity(events.count)
        planEventIndexes.reserveCapacity(events.count)
        for index in events.indices {
            guard let payload = events[index].payload else { continue }
            do {
                let decoded = try events[index].decoder.decodeMessage(payload, cloudEventHeaders: events[index].cloudEventHeaders)
                let plan = planner.plan(decoded)
                if let rejection = plan.rejection {
                    records.append(deadLetter(events[index], rejection: rejection, at: now))
                } else if !plan.pools.isEmpty || plan.hasSecondLayerWork {
                    plans.append(plan)
                    planEventIndexes.append(index)
                }
            } catch {
                records.append(deadLetter(
                    events[index], reason: DeadLetter.Reason(error.reason),
                    errorClass: error.reason.rawValue, errorMessage: error.message, at: now))
            }
        }
        return EventPipeline.PreparedBatch(batch: batch, plans: plans, planEventIndexes: planEventIndexes, rejected: records)
    }

    /// The record for one node's failed operations of one event.
    package func deadLetter(_ event: IncomingEvent, failure: NodeFailure) -> DeadLetter {
        deadLetter(
            event, reason: .operationFailed, errorClass: failure.error.code.rawValue, errorMessage: failure.error.message,
            rule: failure.operations.first?.rule, pool: failure.pool, node: failure.node,
            operations: failure.operations, attempts: failure.attempts, at: RFC3339Clock.now())
    }

    /// One record per webhook target for the items of one event that target did not take.
    package func deadLetters(_ event: IncomingEvent, webhookFailures: [WebhookDeliveryFailure], items: [WebhookItem]) -> [DeadLetter] {
        let now = RFC3339Clock.now()
        return WebhookDeliveryFailure.byTarget(webhookFailures).map { target, failures in
            var record = deadLetter(
                event, reason: .deliveryFailed, errorClass: "", errorMessage: "",
                attempts: failures.map(\.attempts).max() ?? 0, at: now)
            record.recordDeliveryFailure(target: target, failures, of: items)
            return record
        }
    }

    func deadLetter(_ event: IncomingEvent, rejection: PlanRejection, at time: String) -> DeadLetter {
        deadLetter(
            event, reason: DeadLetter.Reason(rejection.reason),
            errorClass: rejection.reason.rawValue, errorMessage: rejection.detail,
            rule: rejection.rule, at: time)
    }

    /// Every record of an event carries the message headers its decoding needs,
    /// so `replay --reprocess` can read a binary-mode CloudEvent again.
    private func deadLetter(
        _ event: IncomingEvent, reason: DeadLetter.Reason, errorClass: String, errorMessage: String,
        rule: String? = nil, pool: String? = nil, node: String? = nil, operations: [PlannedOperation] = [],
        attempts: Int = 1, at time: String
    ) -> DeadLetter {
        var record = DeadLetter(
            event: event.payload ?? [], source: event.source, reason: reason, errorClass: errorClass, errorMessage: errorMessage,
            rule: rule, pool: pool, node: node, operations: operations, attempts: attempts, failedAt: time, worker: workerID)
        record.headers = event.cloudEventHeaders
        return record
    }
}
