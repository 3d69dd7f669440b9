import Testing

@testable import InvalidatorRedis

@Suite struct HashSlotTests {
    @Test func crc16MatchesTheRedisClusterSpecificationVector() {
        #expect(HashSlot.crc16(Array("123456789".utf8)) == 0x31C3)
        #expect(HashSlot.slot(of: "123456789") == 12739)
    }

    @Test func knownSlots() {
        #expect(HashSlot.slot(of: "foo") == 12182)
        #expect(HashSlot.slot(of: "bar") == 5061)
        #expect(HashSlot.slot(of: "") == 0)
    }

    @Test func hashTagsFollowRedisRules() {
        #expect(HashSlot.slot(of: "{user1000}.following") == HashSlot.slot(of: "{user1000}.followers"))
        #expect(HashSlot.slot(of: "{user1000}.following") == HashSlot.slot(of: "user1000"))
        // Only the first {...} counts.
        #expect(HashSlot.slot(of: "foo{bar}{zap}") == HashSlot.slot(of: "bar"))
        // An empty tag means the whole key is hashed.
        #expect(HashSlot.hashTag(of: "foo{}{bar}") == nil)
        #expect(HashSlot.slot(of: "foo{}{bar}") == Int(HashSlot.crc16(Array("foo{}{bar}".utf8))) % 16384)
        // The tag ends at the first } after the first {.
        #expect(HashSlot.hashTag(of: "foo{{bar}}zap") == "{bar")
        #expect(HashSlot.hashTag(of: "foo{bar}{zap}") == "bar")
        #expect(HashSlot.hashTag(of: "no}tag{here") == nil)
    }

    @Test func tagPurgeKeysStayInTheTagSetsSlotAndNeverCollide() {
        // "{tag:a}" and "tag:a" would share `{tag:a}:purging` if braces were kept as they are.
        let setKeys = ["tag:users", "tag:{tenant-1}:users", "odd}key", "tag:{}:x", "a{b", "{tag:a}", "tag:a", "{0}", "0", ""]
        var names: [String: String] = [:]
        for setKey in setKeys {
            let keys = Commands.tagPurgeKeys(forTagSet: setKey)
            for name in [keys.snapshot, keys.owner] {
                #expect(HashSlot.slot(of: name) == HashSlot.slot(of: setKey), "\(setKey) -> \(name)")
                #expect(!setKeys.contains(name), "\(setKey) -> \(name) is a tag set")
                let previous = names.updateValue(setKey, forKey: name)
                #expect(previous == nil, "\(setKey) and \(previous ?? "") share \(name)")
            }
        }
        #expect(Commands.tagPurgeKeys(forTagSet: "tag:users") == .init(snapshot: "{tag:users}:purging", owner: "{tag:users}:purge-owner"))
    }
}
