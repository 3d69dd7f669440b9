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

    public let rules: RuleSet
    public let pools: [PoolTarget]
    private let poolIndexes: [String: Int]

    /// - Parameter pools: every pool, in output order; rules without `pools` target all of them.
    public init(rules: RuleSet, pools: [PoolTarget]) {
        self.rules = rules
        self.pools = pools
        self.poolIndexes = Dictionary(pools.enumerated().map { ($0.element.name, $0.offset) }, uniquingKeysWith: { first, _ in first })
    }

    public func plan(_ event: ChangeEvent) -> Plan {
        let matched = rules.matching(event)
        var builders = pools.map { PoolPlanBuilder(pool: $0) }
        do {
            for rule in matched {
                let rendered = try RenderedRule(rule: rule, event: event)
                for poolIndex in targetPoolIndexes(of: rule) {
                    builders[poolIndex].add(rendered, rule: rule)
                }
            }
        } catch {
            return Plan(event: event, matchedRules: matched.map(\.name), pools: [], rejection: error)
        }
        return Plan(
            event: event,
            matchedRules: matched.map(\.name),
            pools: builders.compactMap { $0.isEmpty ? nil : $0.build() },
            rejection: nil)
    }

    private func targetPoolIndexes(of rule: Rule) -> [Int] {
        guard let names = rule.pools else { return Array(pools.indices) }
        return names.compactMap { poolIndexes[$0] }
    }
}

/// A rule's templates rendered against one event, before pools are applied.
private struct RenderedRule {
    var deletes: [String] = []
    var patterns: [String] = []
    var tags: [String] = []
    var expires: [(key: String, ttl: Duration)] = []
    var bumps: [String] = []
    var precompute: [PrecomputeJob] = []

    init(rule: Rule, event: ChangeEvent) throws(PlanRejection) {
        let renderer = TemplateRenderer(event: event, rule: rule.name)
        deletes = try renderer.render(rule.delete)
        patterns = try renderer.render(rule.patterns, escapingGlobs: true)
        tags = try renderer.render(rule.tags)
        bumps = try renderer.render(rule.bump)
        if let expire = rule.expire {
            expires = try renderer.render(expire.keys).map { ($0, expire.ttl) }
        }
        for job in rule.precompute {
            precompute += try renderer.render(job)
        }
    }
}

private struct TemplateRenderer {
    let event: ChangeEvent
    let rule: String

    /// Every template, once per id when it uses `{id}`; optional misses skipped.
    func render(_ templates: [Template], escapingGlobs: Bool = false) throws(PlanRejection) -> [String] {
        var keys: [String] = []
        for template in templates {
            if template.usesID {
                for id in event.ids {
                    if let key = try render(template, id: id, escapingGlobs: escapingGlobs) { keys.append(key) }
                }
            } else if let key = try render(template, id: event.ids[0], escapingGlobs: escapingGlobs) {
                keys.append(key)
            }
        }
        return keys
    }

    func render(_ job: Rule.Precompute) throws(PlanRejection) -> [PrecomputeJob] {
        let usesID = job.stream.usesID || job.args.contains { $0.value.usesID }
        var jobs: [PrecomputeJob] = []
        for id in usesID ? event.ids : [event.ids[0]] {
            guard let stream = try render(job.stream, id: id, escapingGlobs: false) else { continue }
            var args: [PrecomputeJob.Argument] = []
            for argument in job.args {
                if let value = try render(argument.value, id: id, escapingGlobs: false, checkLength: false) {
                    args.append(PrecomputeJob.Argument(name: argument.name, value: value))
                }
            }
            jobs.append(PrecomputeJob(stream: stream, job: job.job, args: args, eventID: event.eventID, occurredAt: event.occurredAt))
        }
        return jobs
    }

    /// The rendered key, or nil when an optional placeholder had no value.
    func render(_ template: Template, id: String, escapingGlobs: Bool, checkLength: Bool = true) throws(PlanRejection) -> String? {
        var output = ""
        for segment in template.segments {
            switch segment {
            case .literal(let text):
                output += text
            case .placeholder(let placeholder):
                guard let value = placeholder.value(in: event, id: id) else {
                    if placeholder.isOptional { return nil }
                    throw rejection(.unresolvedPlaceholder, template, "the event has no value for \(placeholder)")
                }
                if value.unicodeScalars.contains(where: Template.isControl) {
                    throw rejection(.invalidKey, template, "the value of \(placeholder) contains a control character")
                }
                output += escapingGlobs ? Glob.escape(value) : value
            }
        }
        if checkLength, output.utf8.count > Planner.maximumKeyBytes {
            throw rejection(.invalidKey, template, "the rendered key is \(output.utf8.count) bytes, over the \(Planner.maximumKeyBytes)-byte limit")
        }
        return output
    }

    private func rejection(_ reason: PlanRejection.Reason, _ template: Template, _ message: String) -> PlanRejection {
        PlanRejection(reason: reason, rule: rule, template: template.source, message: message)
    }
}

/// Collects one pool's operations, dropping repeats.
private struct PoolPlanBuilder {
    let pool: PoolTarget
    var operations: [PlannedOperation] = []
    var seen: Set<CacheOperation> = []
    var redeletes: [Redelete] = []

    init(pool: PoolTarget) {
        self.pool = pool
    }

    var isEmpty: Bool { operations.isEmpty && redeletes.isEmpty }

    mutating func add(_ rendered: RenderedRule, rule: Rule) {
        for key in rendered.deletes { append(.delete(key: key), rule: rule.name) }
        for pattern in rendered.patterns { append(.deletePattern(pattern: pattern), rule: rule.name) }
        for tag in rendered.tags { append(.purgeTag(setKey: pool.tagPrefix + tag), rule: rule.name) }
        for (key, ttl) in rendered.expires { append(.expire(key: key, ttlMilliseconds: ttl.milliseconds), rule: rule.name) }
        for key in rendered.bumps { append(.bump(key: key), rule: rule.name) }
        for job in rendered.precompute { append(.precompute(job), rule: rule.name) }
        if let delay = rule.redeleteAfter, !rendered.deletes.isEmpty {
            redeletes.append(Redelete(after: delay, keys: rendered.deletes, rule: rule.name))
        }
    }

    private mutating func append(_ operation: CacheOperation, rule: String) {
        if seen.insert(operation).inserted {
            operations.append(PlannedOperation(operation, rule: rule))
        }
    }

    func build() -> PoolPlan {
        PoolPlan(pool: pool.name, operations: operations, redeletes: redeletes.sorted { $0.after < $1.after })
    }
}
