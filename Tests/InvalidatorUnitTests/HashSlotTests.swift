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

    @Test func snapshotKeysStayInTheTagSetsSlot() {
        for setKey in ["tag:users", "tag:{tenant-1}:users", "odd}key", "tag:{}:x", "a{b"] {
            let snapshot = Commands.snapshotKey(forTagSet: setKey, unique: "u1")
            #expect(HashSlot.slot(of: snapshot) == HashSlot.slot(of: setKey), "\(setKey) -> \(snapshot)")
            #expect(snapshot != setKey)
        }
    }
}
