import Yams

/// Loads rules from YAML text, rejecting anything doubtful with a `file:line:column` diagnostic.
public enum RulesLoader {
    /// Parses a rules file: a mapping with a `rules:` list.
    ///
    /// - Parameters:
    ///   - knownPools: when a config is given, the pool names it defines;
    ///     rules naming any other pool are rejected.
    ///   - webhooks: when a config is given, its `webhooks:`; a `webhook` action
    ///     naming any other target is rejected.
    ///   - reservedEntity: the canary entity, which only the built-in canary rule may match.
    public static func load(
        yaml: String, file: String, knownPools: [String]? = nil, webhooks: [WebhookTarget]? = nil, reservedEntity: String? = nil
    ) throws(ValidationError) -> RuleSet {
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
                rules = parseRules(list, knownPools: knownPools, webhooks: webhooks, reservedEntity: reservedEntity, reader: &reader)
            } else {
                reader.report("the rules file needs a 'rules:' list", at: root)
            }
        }
        guard reader.diagnostics.isEmpty else { throw ValidationError(reader.diagnostics) }
        return RuleSet(rules)
    }

    /// Parses a `rules:` list node that is already part of a document (inline rules in a config).
    static func parseRules(
        _ node: Node, knownPools: [String]?, webhooks: [WebhookTarget]?, reservedEntity: String?, reader: inout YAMLReader
    ) -> [Rule] {
        guard let entries = reader.sequence(node, context: "rules") else { return [] }
        var rules: [Rule] = []
        var namesSeen: [String: Node] = [:]
        for entry in entries {
            guard let (rule, nameNode) = parseRule(entry, knownPools: knownPools, webhooks: webhooks, reader: &reader) else { continue }
            if let reservedEntity, rule.match.entities.contains(reservedEntity) {
                let matchNode = entry.mapping?.first { $0.key.string == "match" }?.value ?? entry
                reader.report("rule '\(rule.name)' matches entity '\(reservedEntity)', which is the canary's: only the built-in canary rule applies canary events (set canary.entity to use this name)", at: matchNode)
                continue
            }
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
        "notify", "webhook",
    ]

    private static func parseRule(
        _ node: Node, knownPools: [String]?, webhooks: [WebhookTarget]?, reader: inout YAMLReader
    ) -> (Rule, Node)? {
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
            rule.pools = parsePools(pools, context: context, knownPools: knownPools, reader: &reader)
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
        rule.notify = objects(fields["notify"], context: "\(context) notify", reader: &reader).compactMap {
            parseNotify($0, context: "\(context) notify", knownPools: knownPools, reader: &reader)
        }
        rule.webhooks = objects(fields["webhook"], context: "\(context) webhook", reader: &reader).compactMap {
            parseWebhook($0, context: "\(context) webhook", webhooks: webhooks, reader: &reader)
        }
        let doesWork = !rule.delete.isEmpty || !rule.patterns.isEmpty || !rule.tags.isEmpty || rule.expire != nil
            || !rule.bump.isEmpty || !rule.precompute.isEmpty || !rule.notify.isEmpty || !rule.webhooks.isEmpty
        // A rule whose actions failed to compile already has its diagnostics.
        if !doesWork, reader.diagnostics.count == problemsBeforeActions {
            reader.report("\(context) has no action; give it delete, patterns, tags, expire, bump, precompute, notify or webhook", at: node)
        }
        return (rule, nameNode)
    }

    /// `pools` of a rule or of its `notify`: one name or a list, each defined by the config when one is given.
    private static func parsePools(_ node: Node, context: String, knownPools: [String]?, reader: inout YAMLReader) -> [String] {
        let named: [(String, Node)] = if case .scalar = node {
            reader.string(node, context: "\(context) pools").map { [($0, node)] } ?? []
        } else {
            reader.stringNodes(node, context: "\(context) pools")
        }
        if named.isEmpty {
            reader.report("\(context) pools must not be empty; leave it out to mean every pool", at: node)
        }
        for (pool, poolNode) in named where knownPools.map({ !$0.contains(pool) }) ?? false {
            reader.report("\(context) names pool '\(pool)', which the config does not define", at: poolNode)
        }
        return named.map(\.0)
    }

    /// One mapping or a list of them.
    private static func objects(_ node: Node?, context: String, reader: inout YAMLReader) -> [Node] {
        guard let node else { return [] }
        if case .mapping = node { return [node] }
        return reader.sequence(node, context: context) ?? []
    }

    private static func parseNotify(_ node: Node, context: String, knownPools: [String]?, reader: inout YAMLReader) -> Rule.Notify? {
        guard let fields = reader.mapping(node, context: context, allowed: ["channel", "message", "pools", "sharded"]) else { return nil }
        guard let channelNode = fields["channel"], let messageNode = fields["message"] else {
            reader.report("\(context) needs a channel and a message", at: node)
            return nil
        }
        let channel = template(channelNode, context: "\(context) channel", reader: &reader)
        let message = reader.jsonTemplate(messageNode, context: "\(context) message")
        let pools = fields["pools"].map { parsePools($0, context: context, knownPools: knownPools, reader: &reader) }
        let sharded = fields["sharded"].flatMap { reader.boolean($0, context: "\(context) sharded") } ?? false
        guard let channel, let message else { return nil }
        return Rule.Notify(channel: channel, message: JSONTemplate(message), pools: pools, sharded: sharded)
    }

    private static func parseWebhook(_ node: Node, context: String, webhooks: [WebhookTarget]?, reader: inout YAMLReader) -> Rule.Webhook? {
        guard let fields = reader.mapping(node, context: context, allowed: ["target", "body"]) else { return nil }
        guard let targetNode = fields["target"] else {
            reader.report("\(context) needs a target, a name under the config's webhooks", at: node)
            return nil
        }
        guard let name = reader.string(targetNode, context: "\(context) target") else { return nil }
        let target = webhooks?.first { $0.name == name }
        if let webhooks, target == nil {
            let known = webhooks.isEmpty ? "the config has no webhooks" : "known: \(webhooks.map(\.name).joined(separator: ", "))"
            reader.report("\(context) target '\(name)' is not defined under webhooks; \(known)", at: targetNode)
        }
        var body = JSONTemplate.Element.object([])
        if let bodyNode = fields["body"] {
            guard case .mapping = bodyNode else {
                reader.report("\(context) body must be a mapping: its fields are merged over the target's body", at: bodyNode)
                return nil
            }
            guard let compiled = reader.jsonTemplate(bodyNode, context: "\(context) body") else { return nil }
            body = compiled
        }
        if let batch = target?.batch, case .object(let bodyFields) = body,
           let batched = bodyFields.last(where: { $0.key == batch.field }) {
            if case .array = batched.value {} else {
                reader.report("\(context) body.\(batch.field) must be a list: target '\(name)' batches requests by concatenating it", at: fields["body"] ?? node)
            }
        }
        return Rule.Webhook(target: name, body: JSONTemplate(body))
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
        guard let text = reader.string(node, context: context),
              let template = compileTemplate(text, at: node, context: context, reader: &reader)
        else { return nil }
        if isPattern, !template.hasLiteralPrefixBeforeWildcard {
            reader.report("\(context): pattern '\(text)' has no literal prefix before its first wildcard, so it could match any key", at: node)
            return nil
        }
        return template
    }

    /// `text`, the string of `node`, compiled; an error is reported at its character.
    static func compileTemplate(_ text: String, at node: Node, context: String, reader: inout YAMLReader) -> Template? {
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
