import Yams

/// Loads rules from YAML text, rejecting anything doubtful with a `file:line:column` diagnostic.
public enum RulesLoader {
    /// Parses a rules file: a mapping with a `rules:` list.
    ///
    /// - Parameter knownPools: when a config is given, the pool names it defines;
    ///   rules naming any other pool are rejected.
    public static func load(yaml: String, file: String, knownPools: [String]? = nil) throws(ValidationError) -> RuleSet {
        var reader = YAMLReader(file: file)
        guard let root = reader.compose(yaml) else {
            if reader.diagnostics.isEmpty {
                reader.report("the rules file is empty; expected a mapping with a 'rules:' list", line: 1, column: 1)
            }
            throw ValidationError(reader.diagnostics)
        }
        var rules: [Rule] = []
        if let fields = reader.mapping(root, context: "the rules file", allowed: ["rules"]) {
            if let list = fields["rules"] {
                rules = parseRules(list, knownPools: knownPools, reader: &reader)
            } else {
                reader.report("the rules file needs a 'rules:' list", at: root)
            }
        }
        guard reader.diagnostics.isEmpty else { throw ValidationError(reader.diagnostics) }
        return RuleSet(rules)
    }

    /// Parses a `rules:` list node that is already part of a document (inline rules in a config).
    static func parseRules(_ node: Node, knownPools: [String]?, reader: inout YAMLReader) -> [Rule] {
        guard let entries = reader.sequence(node, context: "rules") else { return [] }
        var rules: [Rule] = []
        var namesSeen: [String: Node] = [:]
        for entry in entries {
            guard let (rule, nameNode) = parseRule(entry, knownPools: knownPools, reader: &reader) else { continue }
            if let first = namesSeen[rule.name] {
                let line = first.mark?.line ?? 0
                reader.report("duplicate rule name '\(rule.name)' (first defined on line \(line))", at: nameNode)
                continue
            }
            namesSeen[rule.name] = nameNode
            rules.append(rule)
        }
        return rules
    }

    private static let ruleKeys: Set<String> = [
        "name", "match", "pools", "delete", "patterns", "tags", "expire", "bump", "redelete_after", "precompute",
    ]

    private static func parseRule(_ node: Node, knownPools: [String]?, reader: inout YAMLReader) -> (Rule, Node)? {
        guard let fields = reader.mapping(node, context: "a rule", allowed: ruleKeys) else { return nil }
        guard let nameNode = fields["name"], let name = reader.string(nameNode, context: "name") else {
            reader.report("a rule needs a name", at: node)
            return nil
        }
        guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.:".contains($0)) }) else {
            reader.report("rule name '\(name)' must be letters, digits, '-', '_', '.' or ':'", at: nameNode)
            return nil
        }
        let context = "rule '\(name)'"
        guard let matchNode = fields["match"] else {
            reader.report("\(context) needs a match with at least an entity", at: node)
            return nil
        }
        guard let match = parseMatch(matchNode, context: context, reader: &reader) else { return nil }
        var rule = Rule(name: name, match: match)
        if let pools = fields["pools"] {
            let named: [(String, Node)] = if case .scalar = pools {
                reader.string(pools, context: "\(context) pools").map { [($0, pools)] } ?? []
            } else {
                reader.stringNodes(pools, context: "\(context) pools")
            }
            if named.isEmpty {
                reader.report("\(context) pools must not be empty; leave it out to mean every pool", at: pools)
            }
            for (pool, poolNode) in named where knownPools.map({ !$0.contains(pool) }) ?? false {
                reader.report("\(context) names pool '\(pool)', which the config does not define", at: poolNode)
            }
            rule.pools = named.map(\.0)
        }
        let problemsBeforeActions = reader.diagnostics.count
        rule.delete = templates(fields["delete"], context: "\(context) delete", reader: &reader)
        rule.patterns = templates(fields["patterns"], context: "\(context) patterns", reader: &reader, isPattern: true)
        rule.tags = templates(fields["tags"], context: "\(context) tags", reader: &reader)
        rule.bump = templates(fields["bump"], context: "\(context) bump", reader: &reader)
        if let expire = fields["expire"] {
            rule.expire = parseExpire(expire, context: "\(context) expire", reader: &reader)
        }
        if let redelete = fields["redelete_after"] {
            rule.redeleteAfter = reader.duration(redelete, context: "\(context) redelete_after", maximum: Rule.longestRedeleteDelay)
            if rule.delete.isEmpty {
                reader.report("\(context) has redelete_after but no delete keys to delete again", at: redelete)
            }
        }
        if let precompute = fields["precompute"], let entries = reader.sequence(precompute, context: "\(context) precompute") {
            rule.precompute = entries.compactMap { parsePrecompute($0, context: "\(context) precompute", reader: &reader) }
        }
        let doesWork = !rule.delete.isEmpty || !rule.patterns.isEmpty || !rule.tags.isEmpty || rule.expire != nil
            || !rule.bump.isEmpty || !rule.precompute.isEmpty
        // A rule whose actions failed to compile already has its diagnostics.
        if !doesWork, reader.diagnostics.count == problemsBeforeActions {
            reader.report("\(context) has no action; give it delete, patterns, tags, expire, bump or precompute", at: node)
        }
        return (rule, nameNode)
    }

    private static func parseMatch(_ node: Node, context: String, reader: inout YAMLReader) -> Rule.Match? {
        guard let fields = reader.mapping(node, context: "\(context) match", allowed: ["entity", "op", "changed"]) else {
            return nil
        }
        guard let entityNode = fields["entity"] else {
            reader.report("\(context) match needs an entity", at: node)
            return nil
        }
        guard let entities = reader.strings(entityNode, context: "\(context) match.entity"), !entities.isEmpty else {
            return nil
        }
        var match = Rule.Match(entities: entities)
        if let opNode = fields["op"], let names = reader.strings(opNode, context: "\(context) match.op") {
            var ops: [ChangeEvent.Operation] = []
            for name in names {
                if let op = ChangeEvent.Operation(rawValue: name) {
                    ops.append(op)
                } else {
                    reader.report("\(context) match.op '\(name)' is not one of create, update, delete, read", at: opNode)
                }
            }
            match.ops = ops
        }
        if let changedNode = fields["changed"] {
            match.changed = reader.strings(changedNode, context: "\(context) match.changed")
        }
        return match
    }

    private static func parseExpire(_ node: Node, context: String, reader: inout YAMLReader) -> Rule.Expire? {
        guard let fields = reader.mapping(node, context: context, allowed: ["keys", "ttl"]) else { return nil }
        guard let ttlNode = fields["ttl"] else {
            reader.report("\(context) needs a ttl", at: node)
            return nil
        }
        let keys = templates(fields["keys"], context: "\(context) keys", reader: &reader)
        if keys.isEmpty, fields["keys"] == nil {
            reader.report("\(context) needs keys", at: node)
        }
        guard let ttl = reader.duration(ttlNode, context: "\(context) ttl", maximum: Rule.longestExpireTTL) else { return nil }
        return Rule.Expire(keys: keys, ttl: ttl)
    }

    private static func parsePrecompute(_ node: Node, context: String, reader: inout YAMLReader) -> Rule.Precompute? {
        guard let fields = reader.mapping(node, context: context, allowed: ["stream", "job", "args"]) else { return nil }
        guard let streamNode = fields["stream"], let jobNode = fields["job"] else {
            reader.report("\(context) needs a stream and a job", at: node)
            return nil
        }
        guard let stream = template(streamNode, context: "\(context) stream", reader: &reader),
              let job = reader.string(jobNode, context: "\(context) job")
        else { return nil }
        var args: [Rule.Precompute.Argument] = []
        if let argsNode = fields["args"] {
            guard case .mapping(let mapping) = argsNode else {
                reader.report("\(context) args must be a mapping", at: argsNode)
                return nil
            }
            for (key, value) in mapping {
                guard let name = reader.string(key, context: "\(context) argument name"),
                      let compiled = template(value, context: "\(context) args.\(name)", reader: &reader)
                else { continue }
                args.append(Rule.Precompute.Argument(name: name, value: compiled))
            }
        }
        return Rule.Precompute(stream: stream, job: job, args: args)
    }

    private static func templates(_ node: Node?, context: String, reader: inout YAMLReader, isPattern: Bool = false) -> [Template] {
        guard let node else { return [] }
        let entries: [Node]
        if case .scalar = node {
            entries = [node]
        } else {
            entries = reader.sequence(node, context: context) ?? []
        }
        return entries.compactMap { template($0, context: context, reader: &reader, isPattern: isPattern) }
    }

    private static func template(_ node: Node, context: String, reader: inout YAMLReader, isPattern: Bool = false) -> Template? {
        guard let text = reader.string(node, context: context) else { return nil }
        let template: Template
        do {
            template = try Template(compiling: text)
        } catch {
            let mark = node.mark
            // Point at the offending character when the scalar sits on one line.
            let quoteWidth = scalarQuoteWidth(node)
            reader.report(
                "\(context): \(error.message)", line: mark?.line ?? 1,
                column: (mark?.column ?? 1) + quoteWidth + error.offset)
            return nil
        }
        if isPattern, !template.hasLiteralPrefixBeforeWildcard {
            reader.report("\(context): pattern '\(text)' has no literal prefix before its first wildcard, so it could match any key", at: node)
            return nil
        }
        return template
    }

    private static func scalarQuoteWidth(_ node: Node) -> Int {
        guard case .scalar(let scalar) = node else { return 0 }
        switch scalar.style {
        case .singleQuoted, .doubleQuoted: return 1
        default: return 0
        }
    }
}
