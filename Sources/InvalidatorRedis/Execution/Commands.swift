import InvalidatorCore

/// The Redis commands that carry out cache operations.
enum Commands {
    /// UNLINK commands for `keys`, at most `batchSize` keys each. In a cluster a
    /// multi-key command must stay within one slot, so keys are grouped by slot.
    static func unlink<Key: RedisArgument>(_ keys: [Key], batchSize: Int, groupBySlot: Bool) -> [[Key]] {
        let groups: [[Key]]
        if groupBySlot {
            var slotOrder: [Int] = []
            var keysBySlot: [Int: [Key]] = [:]
            for key in keys {
                let slot = HashSlot.slot(of: key)
                if keysBySlot[slot] == nil { slotOrder.append(slot) }
                keysBySlot[slot, default: []].append(key)
            }
            groups = slotOrder.map { keysBySlot[$0]! }
        } else {
            groups = [keys]
        }
        return groups.flatMap { group in
            stride(from: 0, to: group.count, by: batchSize).map { start in
                [Key(text: "UNLINK")] + group[start..<min(start + batchSize, group.count)]
            }
        }
    }

    /// Shortens a TTL atomically, never lengthening it: a key without a TTL
    /// (PTTL -1) gets one, a missing key (PTTL -2) stays missing.
    static let shortenTTLScript = """
        local ttl = tonumber(ARGV[1])
        local current = redis.call('PTTL', KEYS[1])
        if current == -1 or current > ttl then
          return redis.call('PEXPIRE', KEYS[1], ttl)
        end
        return 0
        """

    static func shortenTTL(key: String, milliseconds: Int64) -> [String] {
        ["EVAL", shortenTTLScript, "1", key, String(milliseconds)]
    }

    static func increment(key: String) -> [String] {
        ["INCR", key]
    }

    /// `XADD stream * job <job> args <JSON object> [event_id <id>] [occurred_at <ts>]`.
    static func enqueue(_ job: PrecomputeJob) -> [String] {
        var command = ["XADD", job.stream, "*", "job", job.job, "args", job.argumentsJSON.serialized()]
        if let eventID = job.eventID { command += ["event_id", eventID] }
        if let occurredAt = job.occurredAt { command += ["occurred_at", occurredAt] }
        return command
    }


    /// Renames a tag set to its snapshot key, atomically and only if it is a set:
    /// returns 1 when renamed, 0 when there is no set; WRONGTYPE for other types
    /// (renaming those would hide a key that is not ours to purge).
    static let snapshotTagSetScript = """
        local kind = redis.call('TYPE', KEYS[1]).ok
        if kind == 'none' then
          return 0
        end
        if kind ~= 'set' then
          return redis.error_reply('WRONGTYPE tag ' .. KEYS[1] .. ' is a ' .. kind .. ', not a set')
        end
        redis.call('RENAME', KEYS[1], KEYS[2])
        return 1
        """

    static func snapshotTagSet(_ setKey: String, to snapshot: String) -> [String] {
        ["EVAL", snapshotTagSetScript, "2", setKey, snapshot]
    }

    /// A fresh key for a tag set's snapshot, in the same cluster slot as the set:
    /// the set's own hash tag is kept when it has one; otherwise the whole set
    /// key becomes the hash tag, unless it contains `}` (which would cut that tag
    /// short), in which case a tag that hashes to the same slot is used.
    static func snapshotKey(forTagSet setKey: String, unique: String) -> String {
        if HashSlot.hashTag(of: setKey) != nil {
            return "\(setKey):purging:\(unique)"
        }
        if setKey.contains("}") {
            return "\(HashSlot.tag(forSlot: HashSlot.slot(of: setKey))):\(setKey):purging:\(unique)"
        }
        return "{\(setKey)}:purging:\(unique)"
    }
}
