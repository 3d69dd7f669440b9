import InvalidatorCore
import PropertyBased
import Testing

/// No event value can widen a pattern or escape its key's literal prefix.
@Suite struct PatternSafetyPropertyTests {
    /// Glob metacharacters, separators and ordinary letters, heavily weighted to the dangerous ones.
    static let characters = Gen<Character?>.element(of: Array("*?[]\\^-!:{}ab")).map { $0! }
    static let values = Gen.oneOf(characters, Gen.latin1).string(of: 1...12)

    let planner: Planner

    init() throws {
        let rules = try RulesLoader.load(yaml: """
            rules:
              - name: sessions
                match: { entity: user }
                delete: ["user:{tenant}:{id}"]
                patterns: ["session:{tenant}:{id}:*"]
            """, file: "rules.yaml")
        planner = Planner(rules: rules, pools: [PoolTarget(name: "p")])
    }

    func plan(id: String, tenant: String) -> Plan {
        planner.plan(ChangeEvent(entity: "user", ids: [id], op: .update, tenant: tenant))
    }

    @Test func patternsMatchOnlyKeysUnderTheLiteralValues() async {
        await propertyCheck(count: 400, input: Self.values, Self.values, Self.values) { id, tenant, other in
            let plan = plan(id: id, tenant: tenant)
            guard plan.rejection == nil else {
                // Refused (control characters): nothing is deleted at all, which is safe.
                #expect(plan.rejection?.reason == .invalidKey)
                return
            }
            guard case .deletePattern(let pattern)? = plan.pools.first?.operations.map(\.operation).last else {
                Issue.record("no pattern planned")
                return
            }
            let prefix = "session:\(tenant):\(id):"
            #expect(Glob.matches(pattern, prefix + other), "\(pattern) must match its own keys")
            for candidate in ["session:\(other):\(id):x", "session:\(tenant):\(other):x", "session:\(tenant):\(id)\(other)", other] {
                if Glob.matches(pattern, candidate) {
                    #expect(candidate.hasPrefix(prefix), "\(pattern) widened to \(candidate)")
                }
            }
        }
    }

    /// Values in every position a pattern template can hold one: after a literal,
    /// next to another value, inside a `{{ }}` hash tag, from nested attribute,
    /// before and after paths, and `{version}`.
    @Test func noValueInAnyPositionWidensAPattern() async throws {
        let rules = try RulesLoader.load(yaml: """
            rules:
              - name: positions
                match: { entity: user }
                patterns: ["a:{id}:*", "b:{tenant}{id}*", "c:{{{id}}}:{tenant}:*", "d:{attributes.x}:{before.y}:{after.z.w}:*", "e:{version}-{id}*"]
            """, file: "rules.yaml")
        let planner = Planner(rules: rules, pools: [PoolTarget(name: "p")])
        await propertyCheck(count: 300, input: Self.values, Self.values, Self.values, Self.values) { id, tenant, value, other in
            func prefixes(id: String, tenant: String, value: String) -> [String] {
                ["a:\(id):", "b:\(tenant)\(id)", "c:{\(id)}:\(tenant):", "d:\(value):\(value):\(value):", "e:\(value)-\(id)"]
            }
            let event = ChangeEvent(
                entity: "user", ids: [id], op: .update, tenant: tenant, attributes: ["x": .string(value)],
                before: ["y": .string(value)], after: ["z": .object(["w": .string(value)])], version: value)
            let plan = planner.plan(event)
            guard plan.rejection == nil else {
                #expect(plan.rejection?.reason == .invalidKey)
                return
            }
            let patterns = plan.pools.first?.operations.compactMap { planned -> String? in
                if case .deletePattern(let pattern) = planned.operation { pattern } else { nil }
            } ?? []
            let expected = prefixes(id: id, tenant: tenant, value: value)
            // Each template is a literal prefix and a final `*`: the values are escaped, the rest is not.
            // Patterns are deduplicated, so equal prefixes (possible with equal values) plan one.
            var unique: [String] = []
            for pattern in expected.map({ Glob.escape($0) + "*" }) where !unique.contains(pattern) { unique.append(pattern) }
            #expect(patterns == unique)
            let candidates = [
                prefixes(id: other, tenant: tenant, value: value), prefixes(id: id, tenant: other, value: value),
                prefixes(id: id, tenant: tenant, value: other),
            ]
            for pattern in patterns {
                guard let prefix = expected.first(where: { Glob.matches(pattern, $0 + other) }) else {
                    Issue.record("\(pattern) matches none of its own keys")
                    continue
                }
                for candidate in candidates.flatMap({ $0 }) + [other] where Glob.matches(pattern, candidate + "x") {
                    #expect((candidate + "x").hasPrefix(prefix), "\(pattern) widened to \(candidate)x")
                }
            }
        }
    }

    @Test func keysAreExactlyTheLiteralsAroundTheValues() async {
        await propertyCheck(count: 400, input: Self.values, Self.values) { id, tenant in
            let plan = plan(id: id, tenant: tenant)
            guard plan.rejection == nil else { return }
            let key = plan.pools.first?.operations.first?.operation
            #expect(key == .delete(key: "user:\(tenant):\(id)"))
        }
    }
}
