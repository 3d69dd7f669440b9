import Foundation
import InvalidatorRedis

/// A lock held by one replay, as a Redis key whose value names the holder and
/// whose TTL frees it if the holder dies.
struct ReplayLock: Sendable {
    let pool: RedisPool
    let key: String

    /// A holder name unique to one run of the replayer `replayerID`.
    static func owner(replayerID: String) -> String {
        "\(replayerID):\(UUID().uuidString.prefix(8))"
    }

    /// Takes the lock for `owner`; false when someone else holds it.
    func acquire(owner: String, ttl: Duration) async throws(RedisError) -> Bool {
        try await run(["SET", key, owner, "NX", "PX", String(max(1, ttl.milliseconds))]).string == "OK"
    }

    /// Pushes the expiry out again; false when `owner` no longer holds the lock.
    func extend(owner: String, ttl: Duration) async throws(RedisError) -> Bool {
        try await run(["EVAL", Self.extendScript, "1", key, owner, String(max(1, ttl.milliseconds))]).integer == 1
    }

    /// Releases the lock if `owner` still holds it.
    func release(owner: String) async throws(RedisError) {
        _ = try await run(["EVAL", Self.releaseScript, "1", key, owner])
    }

    private func run(_ command: [String]) async throws(RedisError) -> RedisReply {
        let reply = try await pool.pipeline([command], routingKey: key)[0]
        if let error = reply.error { throw error }
        return reply
    }

    static let releaseScript = """
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
        return 0
        """

    static let extendScript = """
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
        return 0
        """
}
