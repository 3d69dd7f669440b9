/// Rules that load but probably do not do what their author meant: said as warnings.
package enum RuleWarnings {
    /// One warning per suspicious template, in rule order.
    /// - Parameter pools: the config's pools, when there is a config.
    package static func warnings(for rules: RuleSet, pools: [PoolConfiguration]? = nil) -> [String] {
        var warnings: [String] = []
        for rule in rules.rules {
            for notify in rule.notify where notify.sharded {
                let targets = notify.pools ?? rule.pools
                for pool in pools ?? [] where pool.mode != .cluster && targets.map({ $0.contains(pool.name) }) ?? true {
                    warnings.append(
                        "rule '\(rule.name)': notify on '\(notify.channel)' is sharded, but pool '\(pool.name)' is \(pool.mode.rawValue), "
                            + "not a cluster: SPUBLISH is sent as is, and apps must SSUBSCRIBE to receive it")
                }
            }
            for template in rule.patterns where !template.hasWildcard {
                warnings.append(
                    "rule '\(rule.name)': patterns entry '\(template)' has no wildcard, so it deletes only the key of exactly that name "
                        + "(placeholder values are escaped and never act as wildcards); move it to delete, or add a '*'")
            }
            for template in rule.delete where template.isOnlyPlaceholder {
                warnings.append(
                    "rule '\(rule.name)': delete entry '\(template)' is nothing but a placeholder, so any event value names a key "
                        + "of any owner; give it a literal prefix such as 'user:\(template)'")
            }
        }
        return warnings
    }
}

extension Template {
    /// Whether the literal text has an unescaped glob wildcard (placeholder values never add one).
    var hasWildcard: Bool {
        segments.contains { segment in
            if case .literal(let text) = segment { Glob.hasWildcard(text) } else { false }
        }
    }

    var isOnlyPlaceholder: Bool {
        if segments.count == 1, case .placeholder = segments[0] { true } else { false }
    }
}
