/// Many Redis glob patterns, asked which of them match one key: for a single SCAN walk
/// that serves every pattern due on a node.
///
/// A key matches a pattern only if it starts with the pattern's literal prefix (the
/// text before its first unescaped wildcard, escapes resolved). Patterns are indexed
/// by that prefix, one dictionary per distinct prefix length, so a key costs
/// one lookup per length however many patterns there are; only the patterns found are
/// matched in full, with Redis's own semantics (``Glob/scanMatches(_:_:)``).
package struct PatternSet: Sendable {
    /// In the order given; answers are indices into this.
    package let patterns: [String]
    private let patternBytes: [[UInt8]]
    /// Pattern indices (ascending) by literal prefix, for each distinct prefix length.
    private let index: [(length: Int, byPrefix: [ArraySlice<UInt8>: [Int]])]
    /// The literal prefix every pattern starts with (bytes: a cut may fall inside a UTF-8 sequence).
    package let commonPrefix: [UInt8]

    package init(_ patterns: [String]) {
        self.patterns = patterns
        patternBytes = patterns.map { Array($0.utf8) }
        let prefixes = patternBytes.map { Glob.scanLiteralPrefix($0).prefix }
        var byLength: [Int: [ArraySlice<UInt8>: [Int]]] = [:]
        for (position, prefix) in prefixes.enumerated() {
            byLength[prefix.count, default: [:]][prefix[...], default: []].append(position)
        }
        index = byLength.sorted { $0.key < $1.key }.map { (length: $0.key, byPrefix: $0.value) }
        commonPrefix = prefixes.dropFirst().reduce(prefixes.first ?? []) { common, prefix in
            Array(zip(common, prefix).prefix { $0 == $1 }.map(\.0))
        }
    }

    package var isEmpty: Bool { patterns.isEmpty }

    /// The argument for `SCAN ... MATCH` that lets the server skip keys no pattern can
    /// match: the pattern itself when there is only one (a purge of `*:tmp` filters on
    /// the server), else the common prefix, escaped, then `*`; nil when there is no
    /// common prefix.
    package var scanMatch: [UInt8]? {
        if let first = patternBytes.first, patternBytes.allSatisfy({ $0 == first }) { return first }
        return commonPrefix.isEmpty ? nil : Glob.escape(bytes: commonPrefix) + [UInt8(ascii: "*")]
    }

    /// The indices of the patterns that match `key`, ascending.
    package func matching(_ key: [UInt8]) -> [Int] {
        var matched: [Int] = []
        forEachCandidate(of: key) { position in
            if Glob.scanMatches(patternBytes[position][...], key[...]) { matched.append(position) }
            return true
        }
        return matched.sorted()
    }

    /// The lowest index of a pattern that matches `key`, if any.
    package func firstMatch(_ key: [UInt8]) -> Int? {
        var first: Int?
        forEachCandidate(of: key) { position in
            if let first, first < position { return false }
            guard Glob.scanMatches(patternBytes[position][...], key[...]) else { return true }
            first = position
            return false
        }
        return first
    }

    /// Calls `body` with each pattern whose literal prefix `key` starts with, ascending
    /// within one prefix; `body` returns false to skip the rest of that prefix's patterns.
    private func forEachCandidate(of key: [UInt8], _ body: (Int) -> Bool) {
        for (length, byPrefix) in index {
            guard length <= key.count else { return }
            guard let positions = byPrefix[key[..<length]] else { continue }
            for position in positions {
                guard body(position) else { break }
            }
        }
    }
}
