import InvalidatorRedis

/// How the Redis node holding the dead-letter stream keeps it, read with
/// `CONFIG GET`: whether it may evict the stream when full, and whether a restart
/// keeps it. Managed Redis often renames or forbids `CONFIG`; a setting that cannot
/// be read is unknown, never an error.
package struct DeadLetterNodeSettings: Sendable, Equatable {
    package var stream: String
    package var node: String
    /// `maxmemory-policy`; nil when unknown.
    package var evictionPolicy: String?
    /// `appendonly` (`yes` or `no`); nil when unknown.
    package var appendOnly: String?
    /// `save` (RDB snapshot rules, empty when off); nil when unknown.
    package var snapshotRules: String?
    /// Why some setting is unknown (the server's refusal), if one is.
    package var unknownBecause: String?

    /// The settings, one line: `maxmemory-policy noeviction, appendonly yes, save "3600 1"`.
    package var summary: String {
        var parts = [
            "maxmemory-policy \(evictionPolicy ?? "unknown")",
            "appendonly \(appendOnly ?? "unknown")",
            "save \(snapshotRules.map { "\"\($0)\"" } ?? "unknown")",
        ]
        if let unknownBecause { parts.append("unknown because: \(unknownBecause)") }
        return parts.joined(separator: ", ")
    }

    /// Whether a setting could not be read.
    package var hasUnknown: Bool { evictionPolicy == nil || appendOnly == nil || snapshotRules == nil }

    /// What puts the dead letters at risk, one sentence each; empty when nothing
    /// does as far as known (see ``hasUnknown``).
    package var warnings: [String] {
        var warnings: [String] = []
        if let evictionPolicy, evictionPolicy.hasPrefix("allkeys-") {
            warnings.append(
                "maxmemory-policy \(evictionPolicy) lets Redis evict any key once the node is full, the dead-letter stream "
                    + "included; use noeviction (volatile-* policies evict only keys with a TTL, and the stream has none)")
        }
        if appendOnly == "no", snapshotRules == "" {
            warnings.append(
                "no persistence (appendonly no, save \"\"): a restart of the node loses every dead letter; "
                    + "turn on appendonly or RDB snapshots")
        }
        return warnings
    }

    /// Reads the settings of the node that owns `stream` in `pool`.
    /// - Throws: ``RedisError`` only when the node cannot be reached.
    package static func read(pool: RedisPool, stream: String) async throws(RedisError) -> DeadLetterNodeSettings {
        let names = ["maxmemory-policy", "appendonly", "save"]
        let node = try await pool.node(for: stream)
        let replies = try await pool.pipeline(names.map { ["CONFIG", "GET", $0] }, routingKey: stream)
        var values: [String: String] = [:]
        var refusal: String?
        for (name, reply) in zip(names, replies) {
            if let error = reply.error {
                refusal = refusal ?? error.message
            } else if let value = value(of: reply) {
                values[name] = value
            } else {
                refusal = refusal ?? "CONFIG GET \(name) answered nothing"
            }
        }
        return DeadLetterNodeSettings(
            stream: stream, node: node.description, evictionPolicy: values["maxmemory-policy"],
            appendOnly: values["appendonly"], snapshotRules: values["save"], unknownBecause: refusal)
    }

    /// The value of a `CONFIG GET` reply for one name (`[name, value]`), or nil.
    private static func value(of reply: RedisReply) -> String? {
        guard let pair = reply.array, pair.count == 2 else { return nil }
        return pair[1].string
    }
}
