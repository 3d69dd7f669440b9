/// What one event means for the caches: operations per pool, or a reason to dead-letter it.
public struct Plan: Hashable, Sendable {
    public var event: ChangeEvent
    /// Names of the rules that matched, in rule order.
    public var matchedRules: [String]
    /// Operations per pool, in the order pools were given to the planner. Empty
    /// when the event is rejected or no rule produced work.
    public var pools: [PoolPlan]
    /// Set when the event must be dead-lettered instead of applied.
    public var rejection: PlanRejection?
    /// `notify` actions: `.publish` operations per pool. They run only after every
    /// operation in `pools` succeeded on every node, so no app refills its
    /// in-process cache from a Redis node that still holds the old value.
    public var notifications: [PoolPlan]
    /// `webhook` actions, under the same rule as `notifications`.
    public var webhooks: [WebhookItem]

    public init(
        event: ChangeEvent, matchedRules: [String], pools: [PoolPlan], rejection: PlanRejection?,
        notifications: [PoolPlan] = [], webhooks: [WebhookItem] = []
    ) {
        self.event = event
        self.matchedRules = matchedRules
        self.pools = pools
        self.rejection = rejection
        self.notifications = notifications
        self.webhooks = webhooks
    }

    /// Whether the plan has work for a layer behind Redis.
    public var hasSecondLayerWork: Bool { !notifications.isEmpty || !webhooks.isEmpty }
}

/// The work for one pool.
public struct PoolPlan: Hashable, Sendable {
    public var pool: String
    /// Deduplicated operations in rule order.
    public var operations: [PlannedOperation]
    /// Second deletes to run later, shortest delay first.
    public var redeletes: [Redelete]

    public init(pool: String, operations: [PlannedOperation] = [], redeletes: [Redelete] = []) {
        self.pool = pool
        self.operations = operations
        self.redeletes = redeletes
    }
}

/// An operation and the rule that asked for it (for logs and dead letters).
public struct PlannedOperation: Hashable, Sendable {
    public var operation: CacheOperation
    public var rule: String

    public init(_ operation: CacheOperation, rule: String) {
        self.operation = operation
        self.rule = rule
    }
}

/// Keys to delete a second time after a delay, closing the race where a reader
/// refills the cache from a replica that had not yet seen the change.
public struct Redelete: Hashable, Sendable {
    public var after: Duration
    public var keys: [String]
    public var rule: String

    public init(after: Duration, keys: [String], rule: String) {
        self.after = after
        self.keys = keys
        self.rule = rule
    }
}

/// Why an event cannot be applied as the rules say. Applying part of it, or
/// substituting an empty value, could leave stale data or widen a deletion.
public struct PlanRejection: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Reason: String, Hashable, Sendable {
        /// A required placeholder had no value in the event.
        case unresolvedPlaceholder = "unresolved-placeholder"
        /// A value held a control character, or a rendered key exceeded the length limit.
        case invalidKey = "invalid-key"
        /// A direct message asked for a key, pattern or tag outside its source's allow-list.
        case notAllowed = "not-allowed"
    }

    public var reason: Reason
    public var rule: String
    public var template: String
    public var message: String

    public init(reason: Reason, rule: String, template: String, message: String) {
        self.reason = reason
        self.rule = rule
        self.template = template
        self.message = message
    }

    public var description: String { "\(reason.rawValue): rule '\(rule)' template '\(template)': \(message)" }

    /// The message a dead letter records: the template and what went wrong, or for
    /// a refused direct request the message alone, which names the request.
    public var detail: String {
        reason == .notAllowed ? message : "template '\(template)': \(message)"
    }
}
