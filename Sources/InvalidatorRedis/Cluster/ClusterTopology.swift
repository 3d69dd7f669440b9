/// Which primary owns each hash slot, as reported by CLUSTER SLOTS.
struct ClusterTopology: Sendable {
    /// Index into `primaries` for each slot; nil while a slot is unassigned.
    private var ownerIndexBySlot: [Int?]
    let primaries: [RedisEndpoint]

    /// Parses a CLUSTER SLOTS reply: `[[start, end, [host, port, id], replicas...], ...]`.
    /// An empty host means "the address you reached me at", so `reportedBy` fills it in.
    init(clusterSlotsReply reply: RedisReply, reportedBy seed: RedisEndpoint) throws(RedisError) {
        guard let ranges = reply.array else {
            throw RedisError(code: .protocolViolation, message: "unexpected CLUSTER SLOTS reply from \(seed)")
        }
        var primaries: [RedisEndpoint] = []
        var ownerIndexBySlot = [Int?](repeating: nil, count: HashSlot.count)
        for range in ranges {
            guard let fields = range.array, fields.count >= 3,
                  let start = fields[0].integer, let end = fields[1].integer,
                  let node = fields[2].array, node.count >= 2,
                  let host = node[0].string, let port = node[1].integer, (1...65535).contains(port),
                  0 <= start, start <= end, end < HashSlot.count
            else {
                throw RedisError(code: .protocolViolation, message: "malformed CLUSTER SLOTS entry from \(seed)")
            }
            let primary = RedisEndpoint(host: host.isEmpty ? seed.host : host, port: Int(port))
            let index = primaries.firstIndex(of: primary) ?? {
                primaries.append(primary)
                return primaries.count - 1
            }()
            for slot in Int(start)...Int(end) {
                ownerIndexBySlot[slot] = index
            }
        }
        guard !primaries.isEmpty else {
            throw RedisError(code: .clusterDown, message: "\(seed) reports no assigned slots")
        }
        self.primaries = primaries
        self.ownerIndexBySlot = ownerIndexBySlot
    }

    func owner(ofSlot slot: Int) -> RedisEndpoint? {
        ownerIndexBySlot[slot].map { primaries[$0] }
    }

    /// The slots `node` owns.
    func slots(ownedBy node: RedisEndpoint) -> [Int] {
        guard let index = primaries.firstIndex(of: node) else { return [] }
        return ownerIndexBySlot.indices.filter { ownerIndexBySlot[$0] == index }
    }

    /// Applies a MOVED redirection without waiting for a full refresh.
    mutating func assign(slot: Int, to endpoint: RedisEndpoint) -> Bool {
        guard let index = primaries.firstIndex(of: endpoint) else { return false }
        ownerIndexBySlot[slot] = index
        return true
    }
}

/// A parsed `MOVED <slot> <host:port>` or `ASK <slot> <host:port>` error.
struct Redirection: Sendable, Hashable {
    let slot: Int
    let target: RedisEndpoint

    init?(_ error: RedisError) {
        guard error.code == .moved || error.code == .ask else { return nil }
        let words = error.message.split(separator: " ")
        guard words.count == 3, let slot = Int(words[1]), (0..<HashSlot.count).contains(slot),
              let target = RedisEndpoint(String(words[2]))
        else { return nil }
        self.slot = slot
        self.target = target
    }
}
