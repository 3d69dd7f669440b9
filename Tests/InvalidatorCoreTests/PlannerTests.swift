import InvalidatorCore
import Testing

@Suite struct PlannerTests {
    static let rulesYAML = """
        rules:
          - name: user-profile
            match: { entity: user, op: [update, delete], changed: [email, name] }
            delete:   ["user:{tenant}:{id}", "org-members:{before.org_id?}", "org-members:{after.org_id?}"]
            patterns: ["session:{tenant}:{id}:*"]
            tags:     ["tenant:{tenant}:users"]
            expire:   { keys: ["page:{id}"], ttl: 5s }
            bump:     ["version:user:{id}"]
            redelete_after: 500ms
            precompute:
              - { stream: "precompute:jobs", job: warm-user, args: { id: "{id}", tenant: "{tenant}", org: "{after.org_id?}" } }
          - name: user-any
            match: { entity: user }
            pools: [edge]
            delete: ["user:{tenant}:{id}", "user-card:{id}"]
          - name: order
            match: { entity: order }
            delete: ["order:{id}", "customer-orders:{attributes.customer.id}"]
          - name: listing
            match: { entity: product }
            patterns: ["listing:{attributes.category}:*"]
        """

    let planner: Planner

    init() throws {
        planner = Planner(
            rules: try RulesLoader.load(yaml: Self.rulesYAML, file: "rules.yaml"),
            pools: [PoolTarget(name: "primary", tagPrefix: "tag:"), PoolTarget(name: "edge", tagPrefix: "t/")])
    }

    func plan(_ json: String) throws -> Plan {
        planner.plan(try EventDecoder().decode(Array(json.utf8)))
    }

    func operations(_ plan: Plan, pool: String) -> [CacheOperation] {
        plan.pools.first { $0.pool == pool }?.operations.map(\.operation) ?? []
    }

    @Test func plansEveryActionPerPool() throws {
        let plan = try plan("""
            {"entity":"user","id":"123","op":"update","tenant":"acme","changed":["email"],
             "before":{"org_id":"o7"},"after":{"org_id":"o9"},"event_id":"e-1","occurred_at":"2026-11-20T10:00:00Z"}
            """)
        #expect(plan.rejection == nil)
        #expect(plan.matchedRules == ["user-profile", "user-any"])
        #expect(operations(plan, pool: "primary") == [
            .delete(key: "user:acme:123"),
            .delete(key: "org-members:o7"),
            .delete(key: "org-members:o9"),
            .deletePattern(pattern: "session:acme:123:*"),
            .purgeTag(setKey: "tag:tenant:acme:users"),
            .expire(key: "page:123", ttlMilliseconds: 5000),
            .bump(key: "version:user:123"),
            .precompute(PrecomputeJob(
                stream: "precompute:jobs", job: "warm-user",
                args: [.init(name: "id", value: "123"), .init(name: "tenant", value: "acme"), .init(name: "org", value: "o9")],
                eventID: "e-1", occurredAt: "2026-11-20T10:00:00Z")),
        ])
        // The edge pool gets both rules, with its own tag prefix, and the shared key only once.
        let edge = operations(plan, pool: "edge")
        #expect(edge.contains(.purgeTag(setKey: "t/tenant:acme:users")))
        #expect(edge.filter { $0 == .delete(key: "user:acme:123") }.count == 1)
        #expect(edge.contains(.delete(key: "user-card:123")))
        #expect(!operations(plan, pool: "primary").contains(.delete(key: "user-card:123")))
        #expect(plan.pools.first?.redeletes == [
            Redelete(after: .milliseconds(500), keys: ["user:acme:123", "org-members:o7", "org-members:o9"], rule: "user-profile"),
        ])
    }

    @Test func optionalPlaceholdersSkipOnlyTheirTemplate() throws {
        let plan = try plan(#"{"entity":"user","id":"1","op":"delete","tenant":"acme"}"#)
        let primary = operations(plan, pool: "primary")
        #expect(primary.contains(.delete(key: "user:acme:1")))
        #expect(!primary.contains { if case .delete(let key) = $0 { key.hasPrefix("org-members") } else { false } })
        guard case .precompute(let job)? = primary.last else {
            Issue.record("expected a precompute job")
            return
        }
        #expect(job.args.map(\.name) == ["id", "tenant"])
    }

    @Test func aMissingRequiredPlaceholderDeadLettersTheWholeEvent() throws {
        let plan = try plan(#"{"entity":"user","id":"1","op":"delete"}"#)
        #expect(plan.pools.isEmpty)
        #expect(plan.rejection?.reason == .unresolvedPlaceholder)
        #expect(plan.rejection?.rule == "user-profile")
        #expect(plan.rejection?.template == "user:{tenant}:{id}")
    }

    @Test func anEmptyValueIsNotSubstituted() throws {
        let plan = try plan(#"{"entity":"user","id":"1","op":"delete","tenant":""}"#)
        #expect(plan.rejection?.reason == .unresolvedPlaceholder)
    }

    @Test func aNonScalarValueIsUnresolved() throws {
        let plan = try plan(#"{"entity":"order","id":"1","op":"update","attributes":{"customer":{"id":{"x":1}}}}"#)
        #expect(plan.rejection?.reason == .unresolvedPlaceholder)
    }

    @Test func nestedAttributePathsResolve() throws {
        let plan = try plan(#"{"entity":"order","id":"1","op":"update","attributes":{"customer":{"id":77}}}"#)
        #expect(operations(plan, pool: "primary") == [.delete(key: "order:1"), .delete(key: "customer-orders:77")])
    }

    @Test func globCharactersInValuesAreEscapedInPatternsOnly() throws {
        let plan = try plan(#"{"entity":"user","ids":["*","a?[b]\\"],"op":"delete","tenant":"t*"}"#)
        let primary = operations(plan, pool: "primary")
        #expect(primary.contains(.deletePattern(pattern: #"session:t\*:\*:*"#)))
        #expect(primary.contains(.deletePattern(pattern: #"session:t\*:a\?\[b\]\\:*"#)))
        #expect(primary.contains(.delete(key: "user:t*:*")))
    }

    @Test func controlCharactersAreRefused() throws {
        let plan = try plan(#"{"entity":"order","id":"a\nb","op":"update","attributes":{"customer":{"id":1}}}"#)
        #expect(plan.rejection?.reason == .invalidKey)
        #expect(plan.rejection?.message.contains("control character") == true)
    }

    @Test func keysOverOneKiBAreRefused() throws {
        let longID = String(repeating: "x", count: 1020)
        let plan = try plan(#"{"entity":"order","id":"\#(longID)","op":"update","attributes":{"customer":{"id":1}}}"#)
        #expect(plan.rejection?.reason == .invalidKey)
        let fits = try self.plan(#"{"entity":"order","id":"\#(String(longID.dropLast(6)))","op":"update","attributes":{"customer":{"id":1}}}"#)
        #expect(fits.rejection == nil)
    }

    @Test func bulkIdsExpandOnlyTemplatesThatUseThem() throws {
        let plan = try plan(#"{"entity":"user","ids":["1","2","2"],"op":"update","tenant":"acme","changed":["name"]}"#)
        let primary = operations(plan, pool: "primary")
        #expect(primary.filter { if case .delete(let key) = $0 { key.hasPrefix("user:") } else { false } }
            == [.delete(key: "user:acme:1"), .delete(key: "user:acme:2")])
        #expect(primary.filter { if case .purgeTag = $0 { true } else { false } }.count == 1)
    }

    @Test func changedFiltersMatchExplicitDerivedAndUnknownChanges() throws {
        let explicitOther = try plan(#"{"entity":"user","id":"1","op":"update","tenant":"a","changed":["avatar"]}"#)
        #expect(explicitOther.matchedRules == ["user-any"])
        let derived = try plan(#"{"entity":"user","id":"1","op":"update","tenant":"a","before":{"email":"x"},"after":{"email":"y"}}"#)
        #expect(derived.matchedRules == ["user-profile", "user-any"])
        let derivedOther = try plan(#"{"entity":"user","id":"1","op":"update","tenant":"a","before":{"bio":"x"},"after":{"bio":"y"}}"#)
        #expect(derivedOther.matchedRules == ["user-any"])
        let unknown = try plan(#"{"entity":"user","id":"1","op":"update","tenant":"a"}"#)
        #expect(unknown.matchedRules == ["user-profile", "user-any"])
    }

    @Test func opFiltersAndEntitiesMustMatch() throws {
        #expect(try plan(#"{"entity":"user","id":"1","op":"create","tenant":"a"}"#).matchedRules == ["user-any"])
        let nothing = try plan(#"{"entity":"invoice","id":"1","op":"create"}"#)
        #expect(nothing.matchedRules.isEmpty)
        #expect(nothing.pools.isEmpty)
        #expect(nothing.rejection == nil)
    }
}
