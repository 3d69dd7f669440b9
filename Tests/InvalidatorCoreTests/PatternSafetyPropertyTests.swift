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
            #expect(RedisGlob.matches(pattern, prefix + other), "\(pattern) must match its own keys")
            for candidate in ["session:\(other):\(id):x", "session:\(tenant):\(other):x", "session:\(tenant):\(id)\(other)", other] {
                if RedisGlob.matches(pattern, candidate) {
                    #expect(candidate.hasPrefix(prefix), "\(pattern) widened to \(candidate)")
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

/// Redis's own glob semantics (util.c stringmatchlen), to check patterns as SCAN MATCH reads them.
enum RedisGlob {
    static func matches(_ pattern: String, _ string: String) -> Bool {
        matches(Array(pattern.utf8)[...], Array(string.utf8)[...])
    }

    private static func matches(_ pattern: ArraySlice<UInt8>, _ string: ArraySlice<UInt8>) -> Bool {
        var pattern = pattern
        var string = string
        while let token = pattern.first {
            switch token {
            case UInt8(ascii: "*"):
                let rest = pattern.dropFirst()
                if rest.isEmpty { return true }
                var tail = string
                while true {
                    if matches(rest, tail) { return true }
                    if tail.isEmpty { return false }
                    tail = tail.dropFirst()
                }
            case UInt8(ascii: "?"):
                guard !string.isEmpty else { return false }
                string = string.dropFirst()
                pattern = pattern.dropFirst()
            case UInt8(ascii: "["):
                guard let byte = string.first else { return false }
                pattern = pattern.dropFirst()
                let negate = pattern.first == UInt8(ascii: "^")
                if negate { pattern = pattern.dropFirst() }
                var matched = false
                while let current = pattern.first, current != UInt8(ascii: "]") {
                    if current == UInt8(ascii: "\\"), pattern.count >= 2 {
                        pattern = pattern.dropFirst()
                        if pattern.first == byte { matched = true }
                        pattern = pattern.dropFirst()
                    } else if pattern.count >= 3, pattern[pattern.startIndex + 1] == UInt8(ascii: "-") {
                        let low = min(current, pattern[pattern.startIndex + 2])
                        let high = max(current, pattern[pattern.startIndex + 2])
                        if (low...high).contains(byte) { matched = true }
                        pattern = pattern.dropFirst(3)
                    } else {
                        if current == byte { matched = true }
                        pattern = pattern.dropFirst()
                    }
                }
                pattern = pattern.dropFirst()
                if negate { matched.toggle() }
                guard matched else { return false }
                string = string.dropFirst()
            case UInt8(ascii: "\\") where pattern.count >= 2:
                pattern = pattern.dropFirst()
                guard string.first == pattern.first else { return false }
                string = string.dropFirst()
                pattern = pattern.dropFirst()
            default:
                guard string.first == token else { return false }
                string = string.dropFirst()
                pattern = pattern.dropFirst()
            }
        }
        return string.isEmpty
    }
}
