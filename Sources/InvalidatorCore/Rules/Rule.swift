/// One declarative rule: which events it matches and what it does to caches.
public struct Rule: Hashable, Sendable {
    public struct Match: Hashable, Sendable {
        public var entities: [String]
        /// nil matches every operation.
        public var ops: [ChangeEvent.Operation]?
        /// nil matches any change; otherwise at least one of these fields must have
        /// changed (an event that does not say what changed matches).
        public var changed: [String]?

        public init(entities: [String], ops: [ChangeEvent.Operation]? = nil, changed: [String]? = nil) {
            self.entities = entities
            self.ops = ops
            self.changed = changed
        }

        public func matches(_ event: ChangeEvent) -> Bool {
            guard entities.contains(event.entity) else { return false }
            if let ops, !ops.contains(event.op) { return false }
            if let changed, let eventChanged = event.effectiveChanged {
                return eventChanged.contains(where: changed.contains)
            }
            return true
        }
    }

    public struct Expire: Hashable, Sendable {
        public var keys: [Template]
        public var ttl: Duration
        public init(keys: [Template], ttl: Duration) {
            self.keys = keys
            self.ttl = ttl
        }
    }

    public struct Precompute: Hashable, Sendable {
        public struct Argument: Hashable, Sendable {
            public var name: String
            public var value: Template
            public init(name: String, value: Template) {
                self.name = name
                self.value = value
            }
        }

        public var stream: Template
        public var job: String
        public var args: [Argument]

        public init(stream: Template, job: String, args: [Argument]) {
            self.stream = stream
            self.job = job
            self.args = args
        }
    }

    /// `notify`: a message for the apps' own invalidation listeners.
    public struct Notify: Hashable, Sendable {
        public var channel: Template
        public var message: JSONTemplate
        /// nil: the rule's pools.
        public var pools: [String]?
        /// SPUBLISH to a shard channel (Redis Cluster 7+) instead of PUBLISH.
        public var sharded: Bool

        public init(channel: Template, message: JSONTemplate, pools: [String]? = nil, sharded: Bool = false) {
            self.channel = channel
            self.message = message
            self.pools = pools
            self.sharded = sharded
        }
    }

    /// `webhook`: a request to one of the config's `webhooks:` targets.
    public struct Webhook: Hashable, Sendable {
        /// A name under the config's `webhooks:`.
        public var target: String
        /// Merged over the target's body: the rule's object fields win.
        public var body: JSONTemplate

        public init(target: String, body: JSONTemplate) {
            self.target = target
            self.body = body
        }
    }

    public var name: String
    public var match: Match
    /// nil means every pool.
    public var pools: [String]?
    public var delete: [Template] = []
    public var patterns: [Template] = []
    public var tags: [Template] = []
    public var expire: Expire?
    public var bump: [Template] = []
    public var redeleteAfter: Duration?
    public var precompute: [Precompute] = []
    public var notify: [Notify] = []
    public var webhooks: [Webhook] = []

    /// The longest `redelete_after`: an event's position is committed only after its
    /// redelete ran, so a longer delay would hold a partition's commits for longer.
    public static let longestRedeleteDelay: Duration = .seconds(3600)
    /// The longest `expire.ttl` (a year): a soft purge shortens TTLs.
    public static let longestExpireTTL: Duration = .seconds(365 * 86_400)

    public init(name: String, match: Match, pools: [String]? = nil) {
        self.name = name
        self.match = match
        self.pools = pools
    }
}

/// Rules in file order, indexed by entity for fast matching.
public struct RuleSet: Hashable, Sendable {
    public let rules: [Rule]
    /// Candidate rules per entity. Boxed so the hot path hands out a reference
    /// instead of copying a rule's dozen arrays for every event.
    private let rulesByEntity: [String: [SharedRule]]

    /// A rule behind a reference. The planner reads fields through it
    /// (`shared.rule.delete`): a `Rule` copied out costs a retain per field.
    final class SharedRule: Hashable, Sendable {
        let rule: Rule
        init(_ rule: Rule) { self.rule = rule }
        static func == (left: SharedRule, right: SharedRule) -> Bool { left.rule == right.rule }
        func hash(into hasher: inout Hasher) { hasher.combine(rule) }
    }

    public init(_ rules: [Rule]) {
        self.rules = rules
        var index: [String: [SharedRule]] = [:]
        for rule in rules {
            let shared = SharedRule(rule)
            for entity in Set(rule.match.entities) {
                index[entity, default: []].append(shared)
            }
        }
        self.rulesByEntity = index
    }

    /// The rules that match `event`, in file order.
    public func matching(_ event: ChangeEvent) -> [Rule] {
        var matched: [Rule] = []
        forEachMatch(of: event) { matched.append($0) }
        return matched
    }

    /// Calls `body` with each rule that matches `event`, in file order, without
    /// building an array (the planner's hot path).
    public func forEachMatch<Failure: Error>(of event: ChangeEvent, _ body: (Rule) throws(Failure) -> Void) throws(Failure) {
        try forEachMatchingRule(of: event) { (shared) throws(Failure) in try body(shared.rule) }
    }

    /// `forEachMatch` for the planner: each matching rule by reference.
    func forEachMatchingRule<Failure: Error>(of event: ChangeEvent, _ body: (SharedRule) throws(Failure) -> Void) throws(Failure) {
        guard let candidates = rulesByEntity[event.entity] else { return }
        for candidate in candidates where candidate.rule.match.matches(event) {
            try body(candidate)
        }
    }

    /// Every pool name a rule mentions, in first-mention order.
    public var mentionedPools: [String] {
        var seen: Set<String> = []
        return rules.flatMap { ($0.pools ?? []) + $0.notify.flatMap { $0.pools ?? [] } }.filter { seen.insert($0).inserted }
    }
}
