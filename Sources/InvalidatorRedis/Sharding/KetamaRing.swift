/// Client-side consistent hashing compatible with twemproxy's `distribution: ketama`.
///
/// The algorithm, step by step (twemproxy `nc_ketama.c`, all weights 1):
/// 1. Each server is named `host:port` (twemproxy omits `:port` when it is
///    11211, for libmemcached compatibility; that rule is kept).
/// 2. For each server and each `i` in `0..<40`, take `md5("<name>-<i>")` and cut
///    the 16-byte digest into 4 points: point `k` (0..<4) is the little-endian
///    `UInt32` made of digest bytes `4k ..< 4k+4`. That gives 160 points per server.
/// 3. All points are sorted by value into the continuum.
/// 4. A key hashes with the pool's key hash (twemproxy's default `fnv1a_64`,
///    which twemproxy truncates to 32 bits, or `md5`: the first 4 digest bytes,
///    little-endian) and belongs to the server of the first point whose value is
///    >= the hash, wrapping around to the first point.
package struct KetamaRing: Sendable {
    /// How keys are hashed onto the ring (twemproxy's `hash:` setting).
    package enum KeyHash: String, Sendable, Hashable {
        /// twemproxy `fnv1a_64`: FNV-1a with 64-bit constants computed in 32-bit
        /// arithmetic, each byte sign-extended like a C `char`.
        case fnv1a64 = "fnv1a_64"
        /// twemproxy and libmemcached `md5`.
        case md5
    }

    private struct Point: Comparable {
        var value: UInt32
        var serverIndex: Int
        static func < (lhs: Point, rhs: Point) -> Bool { lhs.value < rhs.value }
    }

    package let servers: [RedisEndpoint]
    package let keyHash: KeyHash
    private let continuum: [Point]

    static let hashesPerServer = 40
    static let pointsPerHash = 4

    package init(servers: [RedisEndpoint], keyHash: KeyHash = .fnv1a64) {
        precondition(!servers.isEmpty, "a ketama ring needs at least one server")
        self.servers = servers
        self.keyHash = keyHash
        var points: [Point] = []
        for (serverIndex, server) in servers.enumerated() {
            let name = server.port == 11211 ? server.host : "\(server.host):\(server.port)"
            for hashIndex in 0..<Self.hashesPerServer {
                let digest = MD5.digest("\(name)-\(hashIndex)".utf8)
                for pointIndex in 0..<Self.pointsPerHash {
                    points.append(Point(value: Self.littleEndianWord(digest, at: pointIndex * 4), serverIndex: serverIndex))
                }
            }
        }
        // Equal values (practically never seen) keep insertion order so the ring is deterministic.
        continuum = points.enumerated().sorted { ($0.element.value, $0.offset) < ($1.element.value, $1.offset) }.map(\.element)
    }

    /// The server owning `key`.
    package func server(for key: some RedisArgument) -> RedisEndpoint {
        servers[serverIndex(forHash: hash(key))]
    }

    /// The ring position of `key` under this ring's key hash.
    package func hash(_ key: some RedisArgument) -> UInt32 {
        key.withBytes(hash(bytes:))
    }

    private func hash(bytes key: UnsafeBufferPointer<UInt8>) -> UInt32 {
        switch keyHash {
        case .fnv1a64:
            var hash = UInt32(truncatingIfNeeded: 0xcbf2_9ce4_8422_2325 as UInt64)
            let prime = UInt32(truncatingIfNeeded: 0x100_0000_01b3 as UInt64)
            for byte in key {
                hash ^= UInt32(bitPattern: Int32(Int8(bitPattern: byte)))
                hash = hash &* prime
            }
            return hash
        case .md5:
            return Self.littleEndianWord(MD5.digest(key), at: 0)
        }
    }

    private func serverIndex(forHash hash: UInt32) -> Int {
        var low = 0
        var high = continuum.count
        while low < high {
            let middle = (low + high) / 2
            if continuum[middle].value < hash { low = middle + 1 } else { high = middle }
        }
        return continuum[low == continuum.count ? 0 : low].serverIndex
    }

    private static func littleEndianWord(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { word, index in word | UInt32(bytes[offset + index]) << (8 * UInt32(index)) }
    }
}
