/// A Redis glob (as `SCAN MATCH` reads it) parsed into byte-level tokens, to
/// decide whether one glob's keys are all keys of another.
///
/// Only globs whose meaning is unambiguous parse: an unterminated `[` class or a
/// trailing backslash (which Redis reads in ways that depend on its version)
/// makes `parse` return nil, and callers refuse what they cannot parse.
package struct GlobPattern: Hashable, Sendable {
    package enum Token: Hashable, Sendable {
        /// Any run of bytes, empty included.
        case anyRun
        /// Exactly one byte from the set.
        case byte(ByteSet)
    }

    package let tokens: [Token]

    package init?(_ source: String) {
        var tokens: [Token] = []
        let bytes = Array(source.utf8)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "*"):
                // `**` means `*`; one token keeps the containment search small.
                if tokens.last != .anyRun { tokens.append(.anyRun) }
                index += 1
            case UInt8(ascii: "?"):
                tokens.append(.byte(.all))
                index += 1
            case UInt8(ascii: "\\"):
                guard index + 1 < bytes.count else { return nil }
                tokens.append(.byte(ByteSet(single: bytes[index + 1])))
                index += 2
            case UInt8(ascii: "["):
                guard let (set, next) = Self.parseClass(bytes, from: index + 1) else { return nil }
                tokens.append(.byte(set))
                index = next
            default:
                tokens.append(.byte(ByteSet(single: byte)))
                index += 1
            }
        }
        self.tokens = tokens
    }

    /// Reads a class the way Redis's `stringmatchlen` does (`^` negates, `\x` is
    /// `x`, `a-z` is a range in either order); returns the set and the index after `]`.
    private static func parseClass(_ bytes: [UInt8], from start: Int) -> (ByteSet, Int)? {
        var index = start
        let negated = index < bytes.count && bytes[index] == UInt8(ascii: "^")
        if negated { index += 1 }
        var set = ByteSet()
        while true {
            guard index < bytes.count else { return nil }
            let current = bytes[index]
            if current == UInt8(ascii: "\\"), index + 1 < bytes.count {
                set.insert(bytes[index + 1])
                index += 2
            } else if current == UInt8(ascii: "]") {
                return (negated ? set.complement : set, index + 1)
            } else if index + 2 < bytes.count, bytes[index + 1] == UInt8(ascii: "-") {
                let low = min(current, bytes[index + 2])
                let high = max(current, bytes[index + 2])
                for value in low...high { set.insert(value) }
                index += 3
            } else {
                set.insert(current)
                index += 1
            }
        }
    }

    /// True when the glob matches `key` (a literal string).
    package func matches(_ key: String) -> Bool {
        let bytes = Array(key.utf8)
        var memo = Memo(rows: tokens.count + 1, columns: bytes.count + 1)
        func match(_ token: Int, _ position: Int) -> Bool {
            if let known = memo[token, position] { return known }
            let result: Bool
            if token == tokens.count {
                result = position == bytes.count
            } else {
                switch tokens[token] {
                case .anyRun:
                    result = match(token + 1, position) || (position < bytes.count && match(token, position + 1))
                case .byte(let set):
                    result = position < bytes.count && set.contains(bytes[position]) && match(token + 1, position + 1)
                }
            }
            memo[token, position] = result
            return result
        }
        return match(0, 0)
    }

    /// True only when every key this glob matches is matched by `other`. Sound but
    /// not complete: a true answer is a proof, a false one may be a refusal of a
    /// containment too subtle to prove (callers then refuse, which is safe).
    package func isContained(in other: GlobPattern) -> Bool {
        let mine = tokens
        let theirs = other.tokens
        var memo = Memo(rows: mine.count + 1, columns: theirs.count + 1)
        // contained(i, j): every string matching mine[i...] matches theirs[j...].
        func contained(_ i: Int, _ j: Int) -> Bool {
            if let known = memo[i, j] { return known }
            let result: Bool
            if i == mine.count {
                // Only the empty string remains: theirs must be able to match it.
                result = theirs[j...].allSatisfy { $0 == .anyRun }
            } else if j == theirs.count - 1, theirs[j] == .anyRun {
                // A final run of theirs matches whatever is left: the usual `prefix:*` entry.
                result = true
            } else if j == theirs.count {
                // Theirs matches only the empty string; mine always matches more than that
                // unless it is empty, which the case above handled.
                result = false
            } else {
                switch (mine[i], theirs[j]) {
                case (.byte(let set), .byte(let allowed)):
                    result = set.isSubset(of: allowed) && contained(i + 1, j + 1)
                case (.byte, .anyRun):
                    // Their run matches nothing here, or this byte and maybe more.
                    result = contained(i, j + 1) || contained(i + 1, j)
                case (.anyRun, .anyRun):
                    result = contained(i + 1, j) || contained(i, j + 1)
                case (.anyRun, .byte):
                    // A run of mine can be any bytes, one byte of theirs cannot.
                    result = false
                }
            }
            memo[i, j] = result
            return result
        }
        return contained(0, 0)
    }

    /// False when a wildcard comes before any literal byte, as in `*` or `?:x`: such
    /// a glob reaches keys of any prefix.
    package var hasLiteralPrefix: Bool {
        guard case .byte(let first)? = tokens.first else { return false }
        return first.count == 1
    }
}

/// Answers already found by a search over pairs of positions, so each pair is
/// decided once and a search stays quadratic at worst.
private struct Memo {
    private var cells: [UInt8]
    private let columns: Int

    init(rows: Int, columns: Int) {
        cells = Array(repeating: 0, count: rows * columns)
        self.columns = columns
    }

    subscript(row: Int, column: Int) -> Bool? {
        get {
            switch cells[row * columns + column] {
            case 1: false
            case 2: true
            default: nil
            }
        }
        set {
            cells[row * columns + column] = newValue.map { $0 ? 2 : 1 } ?? 0
        }
    }
}

/// A set of bytes, as a glob class or a single literal byte.
package struct ByteSet: Hashable, Sendable {
    private var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    package init() {}

    package init(single byte: UInt8) {
        insert(byte)
    }

    package static var all: ByteSet {
        ByteSet().complement
    }

    package mutating func insert(_ byte: UInt8) {
        let bit = UInt64(1) << UInt64(byte & 63)
        switch byte >> 6 {
        case 0: words.0 |= bit
        case 1: words.1 |= bit
        case 2: words.2 |= bit
        default: words.3 |= bit
        }
    }

    package func contains(_ byte: UInt8) -> Bool {
        let bit = UInt64(1) << UInt64(byte & 63)
        switch byte >> 6 {
        case 0: return words.0 & bit != 0
        case 1: return words.1 & bit != 0
        case 2: return words.2 & bit != 0
        default: return words.3 & bit != 0
        }
    }

    package var complement: ByteSet {
        var result = ByteSet()
        result.words = (~words.0, ~words.1, ~words.2, ~words.3)
        return result
    }

    package func isSubset(of other: ByteSet) -> Bool {
        words.0 & ~other.words.0 == 0 && words.1 & ~other.words.1 == 0
            && words.2 & ~other.words.2 == 0 && words.3 & ~other.words.3 == 0
    }

    package var count: Int {
        words.0.nonzeroBitCount + words.1.nonzeroBitCount + words.2.nonzeroBitCount + words.3.nonzeroBitCount
    }

    package static func == (lhs: ByteSet, rhs: ByteSet) -> Bool {
        lhs.words == rhs.words
    }

    package func hash(into hasher: inout Hasher) {
        hasher.combine(words.0)
        hasher.combine(words.1)
        hasher.combine(words.2)
        hasher.combine(words.3)
    }
}
