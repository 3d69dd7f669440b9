/// Redis's own glob semantics (util.c stringmatchlen): whether a key matches a pattern as SCAN MATCH reads it.
extension Glob {
    package static func matches(_ pattern: String, _ string: String) -> Bool {
        matches(Array(pattern.utf8)[...], Array(string.utf8)[...])
    }

    /// `matches(_:_:)` for keys as Redis returned them (not necessarily UTF-8).
    package static func matches(_ pattern: String, bytes: [UInt8]) -> Bool {
        matches(Array(pattern.utf8)[...], bytes[...])
    }

    /// `matches(_:bytes:)` for a pattern already in bytes, so a caller testing many keys converts it once.
    ///
    /// Linear-ish whatever the pattern, as Redis's own matcher since CVE-2022-36021: a
    /// pattern such as `*?*?*?…*?\x01` from a direct message would otherwise try every way
    /// its stars can split a key, exponential in the number of stars.
    ///
    /// An empty key matches only the empty pattern, as in Redis, whose loop never starts for
    /// an empty string: not even `*` (``scanMatches(_:_:)`` has SCAN's exception for it).
    package static func matches(_ pattern: ArraySlice<UInt8>, _ string: ArraySlice<UInt8>) -> Bool {
        guard !string.isEmpty else { return pattern.isEmpty }
        var skipLongerMatches = false
        return matches(pattern, string, skipLongerMatches: &skipLongerMatches, nesting: 0)
    }

    /// Whether `SCAN MATCH pattern` returns `key`: as ``matches(_:_:)``, except that SCAN
    /// does not match at all for the pattern `*` alone, so it returns the empty key too.
    package static func scanMatches(_ pattern: ArraySlice<UInt8>, _ key: ArraySlice<UInt8>) -> Bool {
        pattern.elementsEqual([UInt8(ascii: "*")]) || matches(pattern, key)
    }

    /// Stars deeper than this never match, as in Redis (`stringmatchlen`'s nesting limit),
    /// which also bounds the recursion.
    private static let maximumStarNesting = 1000

    /// - Parameter skipLongerMatches: set once the rest of the pattern after a star matched
    ///   nowhere in the rest of the key: then no earlier star can help by matching longer
    ///   (the rest would have to match even later), so every enclosing star gives up at once.
    private static func matches(
        _ pattern: ArraySlice<UInt8>, _ string: ArraySlice<UInt8>, skipLongerMatches: inout Bool, nesting: Int
    ) -> Bool {
        guard nesting <= maximumStarNesting else { return false }
        var pattern = pattern
        var string = string
        while let token = pattern.first {
            switch token {
            case UInt8(ascii: "*"):
                // Consecutive stars are one.
                let rest = pattern.drop { $0 == UInt8(ascii: "*") }
                if rest.isEmpty { return true }
                var tail = string
                while true {
                    if matches(rest, tail, skipLongerMatches: &skipLongerMatches, nesting: nesting + 1) { return true }
                    if skipLongerMatches || tail.isEmpty { break }
                    tail = tail.dropFirst()
                }
                skipLongerMatches = true
                return false
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

extension Glob {
    /// The literal text a pattern starts with, up to its first unescaped wildcard
    /// (escapes resolved); the whole text when it has no wildcard.
    package static func literalPrefix(of pattern: String) -> String {
        String(decoding: scanLiteralPrefix(pattern.utf8).prefix, as: UTF8.self)
    }

    /// Whether `pattern` has an unescaped wildcard, so it can match more than one key.
    package static func hasWildcard(_ pattern: String) -> Bool {
        scanLiteralPrefix(pattern.utf8).reachedWildcard
    }

    /// The literal prefix of a pattern given as bytes (escapes resolved) and whether a wildcard ends it.
    static func scanLiteralPrefix(_ pattern: some Sequence<UInt8>) -> (prefix: [UInt8], reachedWildcard: Bool) {
        var prefix: [UInt8] = []
        var escaped = false
        for byte in pattern {
            if escaped {
                escaped = false
                prefix.append(byte)
            } else if byte == UInt8(ascii: "\\") {
                escaped = true
            } else if byte == UInt8(ascii: "*") || byte == UInt8(ascii: "?") || byte == UInt8(ascii: "[") {
                return (prefix, true)
            } else {
                prefix.append(byte)
            }
        }
        return (prefix, false)
    }
}

extension Template {
    /// The glob every key this template renders matches: each placeholder a `*`, literal
    /// text escaped (a pattern's own wildcards stay wildcards).
    package func shape(isPattern: Bool) -> String {
        segments.map { segment in
            switch segment {
            case .placeholder: "*"
            case .literal(let text): isPattern ? text : Glob.escape(text)
            }
        }.joined()
    }
}
