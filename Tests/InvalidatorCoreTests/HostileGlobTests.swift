import InvalidatorCore
import Testing

/// Patterns built to make a backtracking matcher explode (a direct message may carry
/// one within its allow-list): the walk tests every scanned key against them, so each
/// test must end at once, as Redis's own matcher does since CVE-2022-36021. Without the
/// early exit the first case alone tries ~10^10 ways to split each key.
@Suite(.timeLimit(.minutes(1))) struct HostileGlobTests {
    static let key = Array("session:t1:".utf8) + Array(repeating: UInt8(ascii: "a"), count: 40)

    @Test func manyStarsThatCannotMatchGiveUpAtOnce() {
        let pattern = "session:t1:" + String(repeating: "*?", count: 15) + "\u{01}"
        let set = PatternSet([pattern])
        for _ in 0..<1_000 {
            #expect(set.firstMatch(Self.key) == nil)
        }
    }

    @Test func manyStarsThatCanMatchStillDo() {
        let pattern = "session:t1:" + String(repeating: "*a", count: 30) + "*"
        #expect(Glob.matches(pattern, bytes: Self.key))
        #expect(!Glob.matches(pattern + "b", bytes: Self.key))
        #expect(!Glob.matches(String(repeating: "*a", count: 41), bytes: Self.key), "more a's than the key has")
    }

    @Test func starsNestedPastRedissLimitNeverMatch() {
        // Redis stops at 1000 nested stars; so does the walk, and the recursion stays bounded.
        let deep = String(repeating: "a*", count: 1_200)
        let key = Array(repeating: UInt8(ascii: "a"), count: 1_300)
        #expect(!Glob.matches(deep, bytes: key))
        #expect(Glob.matches(String(repeating: "a*", count: 900), bytes: key))
    }
}
