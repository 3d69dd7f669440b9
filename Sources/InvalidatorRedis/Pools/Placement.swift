import InvalidatorCore

/// Where operations of a pool run, for one batch.
enum Placement: Sendable {
    case single(RedisEndpoint)
    case replicated([RedisEndpoint])
    case sharded(KetamaRing)
    case cluster(ClusterTopology)
    /// Every operation on one node of the pool, for replaying that node's dead
    /// letters; the members of a tag purged there are still deleted on the nodes
    /// `routing` says own them (a sharded pool's tag set holds other nodes' keys).
    indirect case pinned(RedisEndpoint, routing: Placement)

    /// Whether keys must be grouped by hash slot (multi-key commands, snapshot names).
    var usesSlots: Bool {
        switch self {
        case .cluster: true
        case .pinned(_, let routing): routing.usesSlots
        case .single, .replicated, .sharded: false
        }
    }

    /// Single and replicated pools run every operation on every node:
    /// `nodes(for:)` is `allNodes` whatever the operation.
    var sendsEveryOperationToAllNodes: Bool {
        switch self {
        case .single, .replicated, .pinned: true
        case .sharded, .cluster: false
        }
    }

    var allNodes: [RedisEndpoint] {
        switch self {
        case .single(let node): [node]
        case .replicated(let nodes): nodes
        case .sharded(let ring): ring.servers
        case .cluster(let topology): topology.primaries
        case .pinned(let node, _): [node]
        }
    }

    /// The nodes `operation` runs on; empty when its cluster slot has no owner.
    /// Tags run where their set lives: the set key's owner in a cluster, and
    /// every node of a sharded pool (as patterns do).
    func nodes(for operation: CacheOperation) -> [RedisEndpoint] {
        switch (self, operation) {
        case (_, .deletePattern), (.sharded, .purgeTag), (.single, _), (.replicated, _), (.pinned, _):
            return allNodes
        case (.sharded(let ring), _):
            return operation.routingKey.map { [ring.server(for: $0)] } ?? allNodes
        case (.cluster(let topology), _):
            guard let key = operation.routingKey else { return allNodes }
            return topology.owner(ofSlot: HashSlot.slot(of: key)).map { [$0] } ?? []
        }
    }

    /// The node owning a tag member found in a set on `holder`: each copy of a
    /// replicated pool purges its own members; sharded and cluster pools route
    /// members like any other key.
    func owner(ofMember key: some RedisArgument, foundOn holder: RedisEndpoint) -> RedisEndpoint? {
        switch self {
        case .single, .replicated: holder
        case .sharded(let ring): ring.server(for: key)
        case .cluster(let topology): topology.owner(ofSlot: HashSlot.slot(of: key))
        case .pinned(_, let routing): routing.owner(ofMember: key, foundOn: holder)
        }
    }
}
