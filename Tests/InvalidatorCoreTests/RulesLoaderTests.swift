import InvalidatorCore
import Testing

@Suite struct RulesLoaderTests {
    func load(_ yaml: String, knownPools: [String]? = nil) throws(ValidationError) -> RuleSet {
        try RulesLoader.load(yaml: yaml, file: "rules.yaml", knownPools: knownPools)
    }

    /// The diagnostics a file produces, as printed.
    func problems(_ yaml: String, knownPools: [String]? = nil) -> [String] {
        do {
            _ = try load(yaml, knownPools: knownPools)
            return []
        } catch {
            return error.diagnostics.map(\.description)
        }
    }

    @Test func loadsEveryAction() throws {
        let rules = try load("""
            rules:
              - name: user-profile
                match: { entity: user, op: [update, delete], changed: [email, name] }
                pools: [primary, edge]
                delete:   ["user:{tenant}:{id}", "org-members:{before.org_id?}"]
                patterns: ["session:{tenant}:{id}:*"]
                tags:     ["tenant:{tenant}:users"]
                expire:   { keys: ["page:{id}"], ttl: 5s }
                bump:     ["version:user:{id}"]
                redelete_after: 500ms
                precompute:
                  - { stream: "precompute:jobs", job: warm-user, args: { id: "{id}", tenant: "{tenant}" } }
            """)
        let rule = try #require(rules.rules.first)
        #expect(rule.name == "user-profile")
        #expect(rule.match.entities == ["user"])
        #expect(rule.match.ops == [.update, .delete])
        #expect(rule.match.changed == ["email", "name"])
        #expect(rule.pools == ["primary", "edge"])
        #expect(rule.delete.map(\.source) == ["user:{tenant}:{id}", "org-members:{before.org_id?}"])
        #expect(rule.patterns.map(\.source) == ["session:{tenant}:{id}:*"])
        #expect(rule.tags.map(\.source) == ["tenant:{tenant}:users"])
        #expect(rule.expire?.ttl == .seconds(5))
        #expect(rule.bump.count == 1)
        #expect(rule.redeleteAfter == .milliseconds(500))
        #expect(rule.precompute.first?.job == "warm-user")
        #expect(rule.precompute.first?.args.map(\.name) == ["id", "tenant"])
    }

    @Test func aRuleMatchingNoEventIsLegal() throws {
        let rules = try load("rules:\n  - name: never\n    match: { entity: nobody-sends-this }\n    delete: [\"x:{id}\"]\n")
        #expect(rules.rules.count == 1)
    }

    @Test func reportsUnknownPlaceholdersWithTheirColumn() {
        let yaml = "rules:\n  - name: r\n    match: { entity: user }\n    delete: [\"user:{idd}\"]\n"
        #expect(problems(yaml) == [
            "rules.yaml:4:20: rule 'r' delete: unknown placeholder {idd} in template 'user:{idd}'; known: \(Placeholder.knownNames)",
        ])
    }

    @Test func reportsUnknownKeys() {
        let yaml = "rules:\n  - name: r\n    match: { entity: user, tenant: x }\n    delet: [\"a:{id}\"]\n    delete: [\"a:{id}\"]\n"
        let found = problems(yaml)
        #expect(found.count == 2)
        #expect(found[0].hasPrefix("rules.yaml:3:28: unknown key 'tenant' in rule 'r' match"))
        #expect(found[1].hasPrefix("rules.yaml:4:5: unknown key 'delet' in a rule"))
    }

    @Test(arguments: ["5", "5 s", "-1s", "0s", "fast", "1d"])
    func reportsBadDurations(_ duration: String) {
        let yaml = "rules:\n  - name: r\n    match: { entity: user }\n    delete: [\"a:{id}\"]\n    redelete_after: \"\(duration)\"\n"
        let found = problems(yaml)
        #expect(found.count == 1)
        #expect(found.first?.hasPrefix("rules.yaml:5:21: rule 'r' redelete_after must be a positive duration") == true)
    }

    @Test(arguments: ["*:{id}", "{id}*", "?x:{id}", "[ab]:{id}", "{tenant}{id}*"])
    func rejectsPatternsWithoutALiteralPrefix(_ pattern: String) {
        let yaml = "rules:\n  - name: r\n    match: { entity: user }\n    patterns: ['\(pattern)']\n"
        let found = problems(yaml)
        #expect(found.count == 1)
        #expect(found.first?.contains("has no literal prefix before its first wildcard") == true)
    }

    @Test(arguments: ["session:{id}:*", "{tenant}:x*", "a\\*b*:{id}"])
    func acceptsPatternsWithALiteralPrefix(_ pattern: String) throws {
        _ = try load("rules:\n  - name: r\n    match: { entity: user }\n    patterns: ['\(pattern)']\n")
    }

    @Test func reportsDuplicateRuleNames() {
        let yaml = """
            rules:
              - { name: r, match: { entity: a }, delete: ["a:{id}"] }
              - { name: r, match: { entity: b }, delete: ["b:{id}"] }
            """
        #expect(problems(yaml) == ["rules.yaml:3:13: duplicate rule name 'r' (first defined on line 2)"])
    }

    @Test func reportsPoolsTheConfigDoesNotDefine() {
        let yaml = "rules:\n  - name: r\n    match: { entity: user }\n    pools: [primary, edgee]\n    delete: [\"a:{id}\"]\n"
        #expect(problems(yaml, knownPools: ["primary", "edge"]) == [
            "rules.yaml:4:22: rule 'r' names pool 'edgee', which the config does not define",
        ])
        #expect(problems(yaml).isEmpty)
    }

    @Test func reportsEveryProblemNotOnlyTheFirst() {
        let yaml = """
            rules:
              - name: a
                match: { entity: user, op: [update, upsert] }
                delete: ["x:{nope}"]
              - name: b
                match: { entity: user }
                expire: { keys: ["k:{id}"], ttl: soon }
              - name: c
                match: { entity: user }
            """
        let found = problems(yaml)
        #expect(found.count == 4, "\(found)")
        #expect(found.contains { $0.contains("match.op 'upsert'") })
        #expect(found.contains { $0.contains("unknown placeholder {nope}") })
        #expect(found.contains { $0.contains("ttl must be a positive duration") })
        #expect(found.contains { $0.contains("rule 'c' has no action") })
    }

    @Test func reportsYAMLSyntaxErrorsWithPosition() {
        let found = problems("rules:\n  - name: [unclosed\n")
        #expect(found.count == 1)
        #expect(found.first?.hasPrefix("rules.yaml:") == true)
    }

    @Test func reportsBraceMistakes() {
        #expect(problems("rules:\n  - name: r\n    match: { entity: u }\n    delete: [\"a:{id\"]\n").first?.contains("unclosed '{'") == true)
        #expect(problems("rules:\n  - name: r\n    match: { entity: u }\n    delete: [\"a:id}\"]\n").first?.contains("unmatched '}'") == true)
    }

    @Test func doubledBracesAreLiteral() throws {
        let template = try Template(compiling: "cart:{{{id}}}:items")
        #expect(template.segments == [.literal("cart:{"), .placeholder(try #require(placeholder(in: template))), .literal("}:items")])
    }

    private func placeholder(in template: Template) -> Placeholder? {
        for case .placeholder(let placeholder) in template.segments { return placeholder }
        return nil
    }

    @Test func redeleteNeedsDeleteKeys() {
        let yaml = "rules:\n  - name: r\n    match: { entity: u }\n    tags: [\"t:{id}\"]\n    redelete_after: 1s\n"
        #expect(problems(yaml).first?.contains("no delete keys") == true)
    }
}

extension RulesLoaderTests {
    @Test func emptyActionListsAreNoAction() {
        let yaml = "rules:\n  - name: r\n    match: { entity: u }\n    delete: []\n"
        #expect(problems(yaml).first?.contains("rule 'r' has no action") == true)
    }
}
