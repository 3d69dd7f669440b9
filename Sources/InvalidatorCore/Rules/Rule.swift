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

    public init(name: String, match: Match, pools: [String]? = nil) {
        self.name = name
        self.match = match
        self.pools = pools
    }
}

/// Rules in file order, indexed by entity for fast matching.
public struct RuleSet: Hashable, Sendable {
    public let rules: [Rule]
    private let indexesByEntity: [String: [Int]]

    public init(_ rules: [Rule]) {
        self.rules = rules
        var index: [String: [Int]] = [:]
        for (position, rule) in rules.enumerated() {
            for entity in Set(rule.match.entities) {
                index[entity, default: []].append(position)
            }
        }
        self.indexesByEntity = index
    }

    /// The rules that match `event`, in file order.
    public func matching(_ event: ChangeEvent) -> [Rule] {
        guard let candidates = indexesByEntity[event.entity] else { return [] }
        return candidates.lazy.map { rules[$0] }.filter { $0.match.matches(event) }
    }

    /// Every pool name a rule mentions, in first-mention order.
    public var mentionedPools: [String] {
        var seen: Set<String> = []
        return rules.flatMap { $0.pools ?? [] }.filter { seen.insert($0).inserted }
    }
}
