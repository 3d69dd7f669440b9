/// A pool as the planner sees it: a name and where its tag sets live.
public struct PoolTarget: Hashable, Sendable {
    public var name: String
    public var tagPrefix: String

    public init(name: String, tagPrefix: String = "tag:") {
        self.name = name
        self.tagPrefix = tagPrefix
    }
}

/// Turns events into plans. Pure and cheap: safe to call from any thread.
public struct Planner: Sendable {
    /// Keys longer than this are refused: no sane cache key is, and a runaway
    /// attribute must not turn into a huge Redis argument.
    public static let maximumKeyBytes = 1024

    /// The most bytes a `notify` message or a `webhook` body may render to.
    public static let maximumMessageBytes = 64 * 1024

    public let rules: RuleSet
    public let pools: [PoolTarget]
    /// The config's `webhooks:`, whose bodies rules' bodies are merged over.
    public let webhooks: [String: WebhookTarget]
    let poolIndexes: [String: Int]
    /// The built-in rule for canary events, which alone applies them; nil: none.
    public let canary: CanaryConfiguration?

    /// - Parameters:
    ///   - pools: every pool, in output order; rules without `pools` target all of them.
    ///   - webhooks: the targets `webhook` actions name; a rule naming another sends its own body alone.
    ///   - canary: events of its entity are planned by the built-in canary rule, never by `rules`.
    public init(rules: RuleSet, pools: [PoolTarget], webhooks: [WebhookTarget] = [], canary: CanaryConfiguration? = nil) {
        self.rules = rules
        self.canary = canary
        self.pools = pools
        self.webhooks = Dictionary(webhooks.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        self.poolIndexes = Dictionary(pools.enumerated().map { ($0.element.name, $0.offset) }, uniquingKeysWith: { first, _ in first })
    }

    public func plan(_ event: ChangeEvent) -> Plan {
        if let canary, event.entity == canary.entity { return plan(canaryEvent: event, canary) }
        var matchedRules: [String] = []
        var builders = pools.map { PoolPlanBuilder(pool: $0) }
        // Built only when a matching rule has a notify or webhook action.
        var secondLayer: SecondLayerBuilder?
        let renderer = TemplateRenderer(event: event)
        do {
            try rules.forEachMatchingRule(of: event) { (rule) throws(PlanRejection) in
                matchedRules.append(rule.rule.name)
                let rendered = try renderer.render(rule)
                forEachPool(named: rule.rule.pools) { builders[$0].add(rendered, rule: rule) }
                if !rule.rule.notify.isEmpty || !rule.rule.webhooks.isEmpty {
                    if secondLayer == nil { secondLayer = SecondLayerBuilder(pools: pools) }
                    try secondLayer?.add(rule, planner: self, renderer: renderer)
                }
            }
        } catch {
            return Plan(event: event, matchedRules: matchedRules, pools: [], rejection: error)
        }
        return Plan(
            event: event,
            matchedRules: matchedRules,
            pools: builders.compactMap { $0.isEmpty ? nil : $0.build() },
            rejection: nil,
            notifications: secondLayer?.notifications ?? [],
            webhooks: secondLayer?.webhooks ?? [])
    }

    /// Calls `body` with the index of each pool `names` lists that the planner has, or of every pool for nil.
    func forEachPool(named names: [String]?, _ body: (Int) -> Void) {
        if let names {
            for name in names {
                if let index = poolIndexes[name] { body(index) }
            }
        } else {
            for index in pools.indices { body(index) }
        }
    }
}

extension Planner {
    public func plan(_ message: DecodedMessage) -> Plan {
        switch message {
        case .change(let event): plan(event)
        case .direct(let direct): plan(direct)
        }
    }

    /// Deletes of the canary's keys on its pools: the built-in rule, which nothing else may match.
    private func plan(canaryEvent event: ChangeEvent, _ canary: CanaryConfiguration) -> Plan {
        var rendered = RenderedRule()
        for id in event.ids {
            let key = canary.key(for: id)
            guard key.utf8.count <= Self.maximumKeyBytes else {
                let rejection = PlanRejection(
                    reason: .invalidKey, rule: CanaryConfiguration.ruleName, template: canary.keyPrefix + "{id}",
                    message: "the canary key is \(key.utf8.count) bytes, over the \(Self.maximumKeyBytes)-byte limit")
                return Plan(event: event, matchedRules: [CanaryConfiguration.ruleName], pools: [], rejection: rejection)
            }
            rendered.operations.append(.delete(key: key))
        }
        rendered.deleteCount = rendered.operations.count
        let names = canary.targetPools(in: pools.map(\.name))
        let plans = pools.filter { names.contains($0.name) }.map { target in
            var builder = PoolPlanBuilder(pool: target)
            builder.add(rendered, rule: CanaryConfiguration.ruleName, redeleteAfter: nil)
            return builder.build()
        }
        return Plan(event: event, matchedRules: [CanaryConfiguration.ruleName], pools: plans, rejection: nil)
    }

    /// A direct message's operations on its source's pools, or a `not-allowed`
    /// rejection naming the first request outside the allow-list: the message runs
    /// whole or not at all.
    public func plan(_ message: DirectInvalidation) -> Plan {
        let event = message.summaryEvent
        let rule = DirectInvalidationPolicy.ruleName
        let targets = message.policy.pools.map { names in pools.filter { names.contains($0.name) } } ?? pools
        // A repeated request is proven once.
        var checked = Set<DirectInvalidation.Request>()
        for request in message.requests where checked.insert(request).inserted {
            if let refusal = message.policy.refusal(of: request, tenant: message.tenant, pools: targets) {
                let rejection = PlanRejection(reason: .notAllowed, rule: rule, template: request.description, message: refusal)
                return Plan(event: event, matchedRules: [], pools: [], rejection: rejection)
            }
        }
        var rendered = RenderedRule()
        for request in message.requests {
            switch request {
            case .key(let key): rendered.operations.append(.delete(key: key))
            case .pattern(let pattern): rendered.operations.append(.deletePattern(pattern: pattern))
            case .tag(let tag): rendered.operations.append(.purgeTag(setKey: tag))
            }
        }
        let plans = targets.map { target in
            var builder = PoolPlanBuilder(pool: target)
            builder.add(rendered, rule: rule, redeleteAfter: nil)
            return builder.build()
        }
        return Plan(event: event, matchedRules: [rule], pools: plans.filter { !$0.operations.isEmpty }, rejection: nil)
    }
}

/// A rule's operations rendered against one event, before pool specifics (tag
/// prefixes) are applied. One array, because most plans are small and hot.
struct RenderedRule {
    /// Tags are stored unprefixed in `.purgeTag`; each pool adds its own prefix.
    var operations: [CacheOperation] = []
    /// How many leading operations are plain deletes (for `redelete_after`).
    var deleteCount = 0
}

struct TemplateRenderer {
    let event: ChangeEvent

    /// Takes the rule by reference and reads its fields one by one: a `Rule`
    /// copied out costs a retain and a release per field, for every event.
    func render(_ shared: RuleSet.SharedRule) throws(PlanRejection) -> RenderedRule {
        var rendered = RenderedRule()
        let name = shared.rule.name
        try render(shared.rule.delete, rule: name, into: &rendered.operations) { .delete(key: $0) }
        rendered.deleteCount = rendered.operations.count
        try render(shared.rule.patterns, rule: name, escapingGlobs: true, into: &rendered.operations) { .deletePattern(pattern: $0) }
        try render(shared.rule.tags, rule: name, into: &rendered.operations) { .purgeTag(setKey: $0) }
        if let expire = shared.rule.expire {
            let ttl = expire.ttl.milliseconds
            try render(expire.keys, rule: name, into: &rendered.operations) { .expire(key: $0, ttlMilliseconds: ttl) }
        }
        try render(shared.rule.bump, rule: name, into: &rendered.operations) { .bump(key: $0) }
        for job in shared.rule.precompute {
            try render(job, rule: name, into: &rendered.operations)
        }
        return rendered
    }

    /// Every template, once per id when it uses `{id}`; optional misses skipped.
    private func render(
        _ templates: [Template], rule: String, escapingGlobs: Bool = false,
        into operations: inout [CacheOperation], as makeOperation: (String) -> CacheOperation
    ) throws(PlanRejection) {
        for template in templates {
            if template.usesID {
                for id in event.ids {
                    if let key = try render(template, rule: rule, id: id, escapingGlobs: escapingGlobs) {
                        operations.append(makeOperation(key))
                    }
                }
            } else if let key = try render(template, rule: rule, id: event.ids[0], escapingGlobs: escapingGlobs) {
                operations.append(makeOperation(key))
            }
        }
    }

    private func render(_ job: Rule.Precompute, rule: String, into operations: inout [CacheOperation]) throws(PlanRejection) {
        let usesID = job.stream.usesID || job.args.contains { $0.value.usesID }
        for id in usesID ? event.ids : [event.ids[0]] {
            guard let stream = try render(job.stream, rule: rule, id: id, escapingGlobs: false) else { continue }
            var args: [PrecomputeJob.Argument] = []
            for argument in job.args {
                if let value = try render(argument.value, rule: rule, id: id, escapingGlobs: false, checkLength: false) {
                    args.append(PrecomputeJob.Argument(name: argument.name, value: value))
                }
            }
            operations.append(.precompute(PrecomputeJob(
                stream: stream, job: job.job, args: args, eventID: event.eventID, occurredAt: event.occurredAt)))
        }
    }

    /// The rendered key, or nil when an optional placeholder had no value.
    func render(
        _ template: Template, rule: String, id: String, escapingGlobs: Bool, checkLength: Bool = true
    ) throws(PlanRejection) -> String? {
        // No reserveCapacity: most keys fit the 15-byte small-string form, which never allocates.
        var output = ""
        for segment in template.segments {
            switch segment {
            case .literal(let text):
                output += text
            case .placeholder(let placeholder):
                guard let value = placeholder.value(in: event, id: id) else {
                    if placeholder.isOptional { return nil }
                    throw rejection(.unresolvedPlaceholder, rule, template, "the event has no value for \(placeholder)")
                }
                if Template.containsControlCharacter(value) {
                    throw rejection(.invalidKey, rule, template, "the value of \(placeholder) contains a control character")
                }
                output += escapingGlobs ? Glob.escape(value) : value
            }
        }
        if checkLength, output.utf8.count > Planner.maximumKeyBytes {
            throw rejection(.invalidKey, rule, template, "the rendered key is \(output.utf8.count) bytes, over the \(Planner.maximumKeyBytes)-byte limit")
        }
        return output
    }

    func rejection(_ reason: PlanRejection.Reason, _ rule: String, _ template: Template, _ message: String) -> PlanRejection {
        PlanRejection(reason: reason, rule: rule, template: template.source, message: message)
    }
}

/// Collects one pool's operations, dropping repeats.
struct PoolPlanBuilder {
    /// Below this many operations a linear scan beats hashing; above it, a set keeps bulk events linear.
    private static let linearDeduplicationLimit = 32

    let pool: PoolTarget
    var operations: [PlannedOperation] = []
    var seen: Set<CacheOperation>?
    var redeletes: [Redelete] = []

    init(pool: PoolTarget) {
        self.pool = pool
    }

    var isEmpty: Bool { operations.isEmpty && redeletes.isEmpty }

    mutating func add(_ rendered: RenderedRule, rule shared: RuleSet.SharedRule) {
        add(rendered, rule: shared.rule.name, redeleteAfter: shared.rule.redeleteAfter)
    }

    mutating func add(_ rendered: RenderedRule, rule name: String, redeleteAfter: Duration?) {
        let rule = (name: name, redeleteAfter: redeleteAfter)
        operations.reserveCapacity(operations.count + rendered.operations.count)
        for operation in rendered.operations {
            if case .purgeTag(let tag) = operation {
                append(.purgeTag(setKey: pool.tagPrefix + tag), rule: rule.name)
            } else {
                append(operation, rule: rule.name)
            }
        }
        if let delay = rule.redeleteAfter, rendered.deleteCount > 0 {
            let keys = rendered.operations.prefix(rendered.deleteCount).compactMap { operation -> String? in
                if case .delete(let key) = operation { key } else { nil }
            }
            redeletes.append(Redelete(after: delay, keys: keys, rule: rule.name))
        }
    }

    private mutating func append(_ operation: CacheOperation, rule: String) {
        if seen == nil, operations.count >= Self.linearDeduplicationLimit {
            seen = Set(operations.map(\.operation))
        }
        if seen != nil {
            guard seen!.insert(operation).inserted else { return }
        } else if operations.contains(where: { $0.operation == operation }) {
            return
        }
        operations.append(PlannedOperation(operation, rule: rule))
    }

    func build() -> PoolPlan {
        // Sorting only when there is an order to settle: most plans have no redelete.
        PoolPlan(pool: pool.name, operations: operations, redeletes: redeletes.count > 1 ? redeletes.sorted { $0.after < $1.after } : redeletes)
    }
}
