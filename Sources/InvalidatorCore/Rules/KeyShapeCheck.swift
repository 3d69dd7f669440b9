/// How many sampled keys of a pool have the shape of each rule template, for
/// `validate --check-keys`: a template whose shape no real key has probably names
/// keys the application never writes (a missing application prefix, a typo).
package enum KeyShapeCheck {
    package struct Entry: Sendable, Equatable {
        package var rule: String
        /// `delete`, `patterns`, `tags` or `expire`.
        package var field: String
        package var template: String
        package var pool: String
        /// The glob the template's keys match (with the pool's tag_prefix for tags).
        package var shape: String
        package var sampled: Int
        package var matching: Int
        /// When nothing matches: the most common key prefixes seen, best first.
        package var closestPrefixes: [PrefixCount]
    }

    package struct PrefixCount: Sendable, Equatable {
        package var prefix: String
        package var keys: Int
    }

    /// Prefixes named in a warning.
    static let prefixesShown = 3

    /// - Parameter samples: per pool name, its tag_prefix and the keys sampled from it.
    package static func check(_ rules: RuleSet, samples: [(pool: String, tagPrefix: String, keys: [[UInt8]])]) -> [Entry] {
        var entries: [Entry] = []
        for rule in rules.rules {
            var templates: [(field: String, template: Template, isPattern: Bool, isTag: Bool)] = []
            templates += rule.delete.map { ("delete", $0, false, false) }
            templates += rule.patterns.map { ("patterns", $0, true, false) }
            templates += rule.tags.map { ("tags", $0, false, true) }
            templates += (rule.expire?.keys ?? []).map { ("expire", $0, false, false) }
            for sample in samples where rule.pools.map({ $0.contains(sample.pool) }) ?? true {
                for (field, template, isPattern, isTag) in templates {
                    let shape = (isTag ? Glob.escape(sample.tagPrefix) : "") + template.shape(isPattern: isPattern)
                    let matching = sample.keys.count { Glob.matches(shape, bytes: $0) }
                    entries.append(Entry(
                        rule: rule.name, field: field, template: template.source, pool: sample.pool, shape: shape,
                        sampled: sample.keys.count, matching: matching,
                        closestPrefixes: matching > 0 ? [] : closestPrefixes(to: shape, in: sample.keys)))
                }
            }
        }
        return entries
    }

    /// Keys that have the shape after some prefix (`shop:user:1` for `user:*`) name that
    /// prefix; otherwise the most common first segments (up to the first `:`) are the hint.
    static func closestPrefixes(to shape: String, in keys: [[UInt8]]) -> [PrefixCount] {
        let literal = Array(Glob.literalPrefix(of: shape).utf8)
        var counts: [String: Int] = [:]
        if !literal.isEmpty {
            for key in keys where Glob.matches("*" + shape, bytes: key) {
                guard let start = firstRange(of: literal, in: key), start > 0 else { continue }
                counts[String(decoding: key[..<start], as: UTF8.self), default: 0] += 1
            }
        }
        if counts.isEmpty {
            for key in keys {
                let end = key.firstIndex(of: UInt8(ascii: ":")).map { $0 + 1 } ?? key.endIndex
                counts[String(decoding: key[..<end], as: UTF8.self), default: 0] += 1
            }
        }
        return counts.sorted { ($1.value, $0.key) < ($0.value, $1.key) }.prefix(prefixesShown).map { PrefixCount(prefix: $0.key, keys: $0.value) }
    }

    private static func firstRange(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard needle.count <= haystack.count else { return nil }
        for start in 0...(haystack.count - needle.count) where haystack[start..<(start + needle.count)].elementsEqual(needle) {
            return start
        }
        return nil
    }
}
