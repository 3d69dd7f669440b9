import Testing

@testable import InvalidatorRedis

@Suite struct KetamaTests {
    /// Owners observed through a real twemproxy (nutcracker 0.5.0) pool of
    /// 127.0.0.1:26390..26392, weight 1, `distribution: ketama`.
    static let twemproxyServers = ["127.0.0.1:26390", "127.0.0.1:26391", "127.0.0.1:26392"].map { RedisEndpoint($0)! }

    @Test func matchesTwemproxyWithFnv1a64() {
        let ring = KetamaRing(servers: Self.twemproxyServers, keyHash: .fnv1a64)
        // twemproxy's 32-bit fnv1a_64 clusters similar keys; that is its real behaviour.
        for index in 0..<10 {
            #expect(ring.server(for: "user:\(index)").port == 26392, "user:\(index)")
        }
        for index in 10..<40 {
            #expect(ring.server(for: "user:\(index)").port == 26390, "user:\(index)")
        }
        // Bytes above 0x7f are sign-extended like a C char.
        #expect(ring.server(for: "é-ключ").port == 26390)
    }

    @Test func matchesTwemproxyWithMD5() {
        let ring = KetamaRing(servers: Self.twemproxyServers, keyHash: .md5)
        let expected: [String: Int] = [
            "md5user:0": 26392, "md5user:1": 26391, "md5user:2": 26390, "md5user:3": 26390,
            "md5user:4": 26392, "md5user:5": 26391, "md5user:6": 26391, "md5user:7": 26392,
            "md5user:8": 26391, "md5user:9": 26390, "md5user:10": 26392, "md5user:11": 26391,
            "md5user:12": 26391, "md5user:13": 26392, "md5user:14": 26390, "md5user:15": 26390,
            "md5user:16": 26392, "md5user:17": 26392, "md5user:18": 26391, "md5user:19": 26392,
            "md5user:20": 26391, "md5user:21": 26392, "md5user:22": 26392, "md5user:23": 26391,
            "md5user:24": 26391, "md5user:25": 26391, "md5user:26": 26391, "md5user:27": 26390,
            "md5user:28": 26392, "md5user:29": 26392, "md5user:30": 26392, "md5user:31": 26390,
            "md5user:32": 26392, "md5user:33": 26390, "md5user:34": 26391, "md5user:35": 26390,
            "md5user:36": 26392, "md5user:37": 26390, "md5user:38": 26391, "md5user:39": 26391,
            "md5é-ключ": 26391,
        ]
        for (key, port) in expected {
            #expect(ring.server(for: key).port == port, "\(key)")
        }
    }

    @Test func md5MatchesRFC1321Vectors() {
        let vectors = [
            "": "d41d8cd98f00b204e9800998ecf8427e",
            "abc": "900150983cd24fb0d6963f7d28e17f72",
            "message digest": "f96b697d7cb7938d525a2f31aaf161d0",
            "12345678901234567890123456789012345678901234567890123456789012345678901234567890":
                "57edf4a22be3c955ac49da2e2107b67a",
        ]
        for (input, expected) in vectors {
            let hex = MD5.digest(input.utf8).map { String($0, radix: 16) }.map { $0.count == 1 ? "0" + $0 : $0 }.joined()
            #expect(hex == expected, "md5(\(input))")
        }
    }

    @Test func keysSpreadEvenlyOverServers() {
        let servers = ["10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"].map { RedisEndpoint($0)! }
        let ring = KetamaRing(servers: servers)
        var counts: [RedisEndpoint: Int] = [:]
        for index in 0..<30_000 {
            counts[ring.server(for: "user:\(index)"), default: 0] += 1
        }
        for server in servers {
            #expect((7_000...13_000).contains(counts[server] ?? 0), "\(server): \(counts[server] ?? 0)")
        }
    }

    @Test func addingAServerOnlyMovesKeysToIt() {
        let three = ["10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"].map { RedisEndpoint($0)! }
        let four = three + [RedisEndpoint("10.0.0.4:6379")!]
        let before = KetamaRing(servers: three)
        let after = KetamaRing(servers: four)
        var moved = 0
        for index in 0..<20_000 {
            let key = "session:\(index)"
            let (old, new) = (before.server(for: key), after.server(for: key))
            if old != new {
                moved += 1
                #expect(new == four[3])
            }
        }
        #expect((3_000...7_000).contains(moved))
        // The same servers in another order give the same owners.
        let shuffled = KetamaRing(servers: three.reversed())
        for index in 0..<1_000 {
            #expect(shuffled.server(for: "k\(index)") == before.server(for: "k\(index)"))
        }
    }
}
