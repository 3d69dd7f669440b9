import InvalidatorCore
import Testing

/// The pure half of `validate --check-keys` and of the rule warnings.
@Suite struct KeyShapeCheckTests {
    static let rules = try! RulesLoader.load(yaml: """
        rules:
          - { name: users, match: { entity: user }, delete: ["user:{id}"], tags: ["team:{id}"] }
          - { name: carts, match: { entity: cart }, pools: [other], patterns: ["cart:{id}:*"] }
        """, file: "rules.yaml")

    @Test func templatesAreMatchedByTheirShapeAndMissesNameTheMissingPrefix() {
        let keys = ["shop:user:1", "shop:user:2", "app:user:3", "tag:team:9", "misc"].map { Array($0.utf8) }
        let entries = KeyShapeCheck.check(Self.rules, samples: [(pool: "cache", tagPrefix: "tag:", keys: keys)])
        #expect(entries.map(\.shape) == ["user:*", "tag:team:*"], "carts is only for pool 'other'")
        #expect(entries.map(\.matching) == [0, 1])
        #expect(entries[0].closestPrefixes.map(\.prefix) == ["shop:", "app:"])
        #expect(entries[0].closestPrefixes.map(\.keys) == [2, 1])
        #expect(entries[1].closestPrefixes.isEmpty)
    }

    @Test func withoutTheShapeAfterAPrefixTheCommonFirstSegmentsAreNamed() {
        let keys = ["a:1", "a:2", "b:1", "plain"].map { Array($0.utf8) }
        let entries = KeyShapeCheck.check(Self.rules, samples: [(pool: "cache", tagPrefix: "t/", keys: keys)])
        #expect(entries[0].closestPrefixes.map(\.prefix) == ["a:", "b:", "plain"])
        #expect(entries[1].shape == "t/team:*")
    }

    @Test(arguments: [
        ("user:*", "user:", true), ("*", "", true), ("*:x", "", true), ("a\\*b", "a*b", false),
        ("k?", "k", true), ("[ab]:x", "", true), ("plain", "plain", false),
    ])
    func literalPrefixAndWildcards(pattern: String, prefix: String, hasWildcard: Bool) {
        #expect(Glob.literalPrefix(of: pattern) == prefix)
        #expect(Glob.hasWildcard(pattern) == hasWildcard)
    }

    @Test func suspiciousTemplatesAreWarnedAbout() throws {
        let rules = try RulesLoader.load(yaml: """
            rules:
              - { name: literal, match: { entity: a }, patterns: ["a:{id}:b"] }
              - { name: bare, match: { entity: a }, delete: ["{id}"] }
              - { name: fine, match: { entity: a }, delete: ["a:{id}", "{tenant}:{id}"], patterns: ["a:{id}:*"] }
            """, file: "rules.yaml")
        let warnings = RuleWarnings.warnings(for: rules)
        #expect(warnings.count == 2)
        #expect(warnings[0].hasPrefix("rule 'literal': patterns entry 'a:{id}:b' has no wildcard"))
        #expect(warnings[1].hasPrefix("rule 'bare': delete entry '{id}' is nothing but a placeholder"))
    }
}
