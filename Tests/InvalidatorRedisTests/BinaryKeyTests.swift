import InvalidatorCore
import TestSupport
import Testing

@testable import InvalidatorRedis

/// Keys are bytes, not text. Keys that SCAN (patterns) and SSCAN (tags) read back
/// must be unlinked under exactly those bytes: repaired into UTF-8 they name
/// another key, Redis answers 0 deletions, and the cached value stays.
@Suite(.timeLimit(.minutes(2))) struct BinaryKeyTests {
    /// `session:1:` followed by bytes that are not UTF-8.
    static let rawSessionKeys: [[UInt8]] = [
        Array("session:1:".utf8) + [0xFF, 0xFE],
        Array("session:1:".utf8) + [0xC3],                 // a truncated sequence
        Array("session:1:".utf8) + [0xED, 0xA0, 0x80],     // an encoded surrogate
        Array("session:1:a".utf8) + [0x80, 0x00, 0x0D, 0x0A], // a NUL and CR LF too
    ]
    /// Outside the pattern: must stay.
    static let rawOtherKey: [UInt8] = Array("session:2:".utf8) + [0xFF, 0xFE]

    static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    /// What the member `cart:` + 0xff 0xfe used to be "deleted" as: its repair into UTF-8.
    static let repairedTwin = text(Array("cart:".utf8) + [0xFF, 0xFE])

    // MARK: Single

    @Test func aPatternDeletesKeysThatAreNotUTF8() async throws {
        let server = try await RedisServer.start()
        for key in Self.rawSessionKeys + [Self.rawOtherKey] { try server.set(key) }
        try server.call("SET", "session:1:plain", "v")
        #expect(try Self.rawSessionKeys.allSatisfy { try server.exists($0) }, "seeded under their raw bytes")
        let pool = try makePool(.single, [server.endpoint])

        let report = await pool.execute([.deletePattern(pattern: "session:1:*")])

        #expect(report.isSuccess, "\(report.failures)")
        for key in Self.rawSessionKeys {
            #expect(try !server.exists(key), "\(key) is still there")
        }
        #expect(try server.call("EXISTS", "session:1:plain") == "0")
        #expect(try server.exists(Self.rawOtherKey))
        #expect(try server.call("DBSIZE") == "1")
    }

    @Test func aTagPurgeDeletesMembersThatAreNotUTF8AndNotTheirRepairedTwins() async throws {
        let server = try await RedisServer.start()
        let members: [[UInt8]] = [
            Array("cart:".utf8) + [0xFF, 0xFE], Array("cart:".utf8) + [0xC0, 0x80], Array("cart:plain".utf8),
        ]
        for member in members { try server.set(member) }
        // Not a member, but what the first member turns into when repaired as text.
        try server.call("SET", Self.repairedTwin, "v")
        try server.call(bytes: [Array("SADD".utf8), Array("tag:carts".utf8)] + members)
        let pool = try makePool(.single, [server.endpoint])

        let report = await pool.execute([.purgeTag(setKey: "tag:carts")])

        #expect(report.isSuccess, "\(report.failures)")
        for member in members {
            #expect(try !server.exists(member), "\(member) is still there")
        }
        #expect(try server.call("EXISTS", "tag:carts") == "0")
        #expect(try server.call("EXISTS", Self.repairedTwin) == "1", "a key that was never a member stays")
        #expect(try server.call("DBSIZE") == "1")
    }

    // MARK: Cluster

    @Test func patternsAndTagsInAClusterDeleteKeysThatAreNotUTF8() async throws {
        let cluster = try await RedisCluster.start(primaries: 3)
        // Varied trailing bytes spread the keys over slots and so over every primary.
        let sessions: [[UInt8]] = (0..<40).map { Array("session:1:".utf8) + [0xFF, 0xFE, UInt8($0)] }
        let members: [[UInt8]] = (0..<40).map { Array("cart:".utf8) + [0xFE, UInt8(0x80 + $0)] }
        var owners: [[UInt8]: RedisServer] = [:]
        for key in sessions + members + [Self.rawOtherKey] {
            let owner = try cluster.server(owningBytes: key)
            owners[key] = owner
            try owner.set(key)
            // The pool routes by the slot of the raw bytes: it must agree with Redis.
            let slot = try owner.call(bytes: [Array("CLUSTER".utf8), Array("KEYSLOT".utf8), key])
            #expect(slot == [Array(String(HashSlot.slot(of: key)).utf8)])
        }
        #expect(Set(sessions.map { ObjectIdentifier(owners[$0]!) }).count == 3, "every primary holds some of the keys")
        let setOwner = try cluster.server(owning: "tag:carts")
        try setOwner.call(bytes: [Array("SADD".utf8), Array("tag:carts".utf8)] + members)
        let pool = try makePool(.cluster, [cluster.endpoints[0]])

        let report = await pool.execute([.deletePattern(pattern: "session:1:*"), .purgeTag(setKey: "tag:carts")])

        #expect(report.isSuccess, "\(report.failures)")
        for key in sessions + members {
            #expect(try !owners[key]!.exists(key), "\(key) is still there")
        }
        #expect(try owners[Self.rawOtherKey]!.exists(Self.rawOtherKey))
        #expect(try setOwner.call("EXISTS", "tag:carts") == "0")
        let total = try cluster.servers.map { Int(try $0.call("DBSIZE")) ?? -1 }.reduce(0, +)
        #expect(total == 1)
    }

    // MARK: Sharded

    @Test func patternsAndTagsInAShardedPoolDeleteKeysThatAreNotUTF8() async throws {
        let servers = try await RedisServer.start(count: 3)
        let ring = KetamaRing(servers: servers.map { endpoint($0.endpoint) })
        // Patterns run on every node: every node holds the session keys.
        for server in servers {
            for key in Self.rawSessionKeys + [Self.rawOtherKey] { try server.set(key) }
        }
        // Members live on their ketama owner, hashed over their raw bytes.
        let members: [[UInt8]] = (0..<60).map { Array("\($0 * 7919):cart:".utf8) + [0xFF, 0xFE] }
        var owners: [[UInt8]: RedisServer] = [:]
        for member in members {
            let owner = servers.first { endpoint($0.endpoint) == ring.server(for: member) }!
            owners[member] = owner
            try owner.set(member)
        }
        #expect(Set(members.map { ObjectIdentifier(owners[$0]!) }).count == 3, "every node owns some of the members")
        try servers[0].call(bytes: [Array("SADD".utf8), Array("tag:carts".utf8)] + members)
        let pool = try makePool(.sharded, servers.map(\.endpoint))

        let report = await pool.execute([.deletePattern(pattern: "session:1:*"), .purgeTag(setKey: "tag:carts")])

        #expect(report.isSuccess, "\(report.failures)")
        for server in servers {
            for key in Self.rawSessionKeys {
                #expect(try !server.exists(key), "\(key) is still on \(server.endpoint)")
            }
            #expect(try server.exists(Self.rawOtherKey))
            #expect(try server.call("DBSIZE") == "1")
        }
        for member in members {
            #expect(try !owners[member]!.exists(member), "\(member) is still there")
        }
    }

    // MARK: Routing agrees for text and bytes

    @Test func textAndItsBytesRouteAlike() {
        let ring = KetamaRing(servers: ["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"].map(endpoint))
        for key in ["user:1", "{user:7}:field", "é", "", "cart:{42}"] {
            #expect(HashSlot.slot(of: key) == HashSlot.slot(of: Array(key.utf8)), "\(key)")
            #expect(ring.server(for: key) == ring.server(for: Array(key.utf8)), "\(key)")
        }
        // A hash tag is found in bytes that are not UTF-8 too.
        #expect(HashSlot.slot(of: [0xFF] + Array("{user:7}".utf8) + [0xFE]) == HashSlot.slot(of: "{user:7}:field"))
    }
}

extension RedisServer {
    /// SETs a key given as raw bytes.
    func set(_ key: [UInt8]) throws {
        let reply = try call(bytes: [Array("SET".utf8), key, Array("v".utf8)])
        guard reply == [Array("OK".utf8)] else { throw TestSupportError("SET failed: \(reply.map { String(decoding: $0, as: UTF8.self) })") }
    }

    /// Whether a key given as raw bytes exists.
    func exists(_ key: [UInt8]) throws -> Bool {
        let reply = try call(bytes: [Array("EXISTS".utf8), key])
        guard reply == [Array("0".utf8)] || reply == [Array("1".utf8)] else {
            throw TestSupportError("EXISTS: \(reply.map { String(decoding: $0, as: UTF8.self) })")
        }
        return reply == [Array("1".utf8)]
    }
}

extension RedisCluster {
    /// The server owning the slot of a key given as raw bytes: the only one that answers without MOVED.
    func server(owningBytes key: [UInt8]) throws -> RedisServer {
        for server in servers {
            let reply = try server.call(bytes: [Array("EXISTS".utf8), key])
            if !(reply.first ?? []).starts(with: Array("MOVED".utf8)) { return server }
        }
        throw TestSupportError("no owner for \(key)")
    }
}
