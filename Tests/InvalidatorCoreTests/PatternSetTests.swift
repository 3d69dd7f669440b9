import InvalidatorCore
import Testing

/// The cases of Redis's glob syntax that decide a pattern's literal prefix, and the
/// server-side `MATCH` built from the prefix all patterns share.
@Suite struct PatternSetTests {
    func matching(_ patterns: [String], _ key: String) -> [Int] {
        PatternSet(patterns).matching(Array(key.utf8))
    }

    @Test func findsEveryPatternOfAKeyAmongManyWithSimilarPrefixes() {
        let patterns = (0..<2_000).map { "session:acme:\($0):*" } + ["session:*", "session:acme:1?:x", "other:*"]
        let set = PatternSet(patterns)
        #expect(set.matching(Array("session:acme:12:x".utf8)) == [12, 2_000, 2_001])
        #expect(set.firstMatch(Array("session:acme:12:x".utf8)) == 12)
        #expect(set.matching(Array("session:acme:1999:".utf8)) == [1_999, 2_000])
        #expect(set.matching(Array("session:acme:2000:x".utf8)) == [2_000])
        #expect(set.matching(Array("sessions:acme:1:x".utf8)).isEmpty)
        #expect(set.firstMatch(Array("other".utf8)) == nil)
    }

    @Test(arguments: [
        // An escaped wildcard is part of the prefix and matches only itself.
        (#"a\*b*"#, "a*bc", true), (#"a\*b*"#, "axbc", false),
        // A trailing backslash is a literal backslash.
        (#"a\"#, #"a\"#, true), (#"a\"#, "a", false),
        // An unterminated class still matches one byte from its members.
        ("a[bc", "ab", true), ("a[bc", "ad", false), ("a[^b", "ac", true),
        // `]` alone is literal; a class may hold an escaped `]`.
        ("a]", "a]", true), (#"a[\]]"#, "a]", true),
        // The empty pattern matches only the empty key.
        ("", "", true), ("", "a", false),
        ("?", "", false), ("**", "", false), ("?*", "", false), ("[a]*", "", false),
    ])
    func redisSyntaxCornerCases(pattern: String, key: String, matches: Bool) {
        #expect(Glob.matches(pattern, key) == matches)
        #expect(matching([pattern, "zzz*"], key) == (matches ? [0] : []))
    }

    /// Redis's matcher never matches the empty key with `*`, but SCAN skips matching for
    /// the pattern `*` alone, so the walk, like SCAN MATCH, finds the empty key with it.
    @Test func theEmptyKeyMatchesTheStarAloneOnlyAsScanDoes() {
        #expect(!Glob.matches("*", ""))
        #expect(matching(["*", "**", "zzz*"], "") == [0])
        #expect(matching(["*", "**"], "a") == [0, 1])
    }

    @Test func keysNeedNotBeUTF8() {
        let set = PatternSet(["bin:*", "bin:\u{e9}*"])
        #expect(set.matching([0x62, 0x69, 0x6E, 0x3A, 0xFF, 0x00]) == [0])
        #expect(set.matching(Array("bin:\u{e9}t\u{e9}".utf8)) == [0, 1])
    }

    @Test func theServerSideMatchIsTheCommonPrefixEscaped() {
        #expect(PatternSet(["session:acme:1:*", "session:acme:22:*"]).scanMatch == Array("session:acme:*".utf8))
        #expect(PatternSet([#"a\*b:1*"#, #"a\*b:2?"#]).scanMatch == Array(#"a\*b:*"#.utf8))
        #expect(PatternSet(["k[ey]:*", "k:*"]).scanMatch == Array("k*".utf8))
        // A pattern without a literal prefix, or no common prefix: every key must be seen.
        #expect(PatternSet(["a:*", "*:b"]).scanMatch == nil)
        #expect(PatternSet(["a:*", "b:*"]).scanMatch == nil)
        #expect(PatternSet([]).scanMatch == nil)
        // One pattern (however often) is its own MATCH, prefix or not: the server filters exactly.
        #expect(PatternSet(["*:tmp"]).scanMatch == Array("*:tmp".utf8))
        #expect(PatternSet(["user:[ab]*", "user:[ab]*"]).scanMatch == Array("user:[ab]*".utf8))
        // A cut inside a UTF-8 sequence is still a byte prefix of every key that can match.
        #expect(PatternSet(["\u{e9}*", "\u{e8}*"]).commonPrefix == [0xC3])
    }
}
