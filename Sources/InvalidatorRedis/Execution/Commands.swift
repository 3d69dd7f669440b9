import InvalidatorCore

/// The Redis commands that carry out cache operations.
enum Commands {
    /// UNLINK commands for `keys`, at most `batchSize` keys each, grouped by slot in a cluster.
    static func unlink<Key: RedisArgument>(_ keys: [Key], batchSize: Int, groupBySlot: Bool) -> [[Key]] {
        keyBatches(keys, batchSize: batchSize, groupBySlot: groupBySlot).map { [Key(text: "UNLINK")] + $0 }
    }

    /// `keys` in batches of at most `batchSize`. In a cluster a multi-key command must
    /// stay within one slot, so keys are grouped by slot.
    static func keyBatches<Key: RedisArgument>(_ keys: [Key], batchSize: Int, groupBySlot: Bool) -> [ArraySlice<Key>] {
        batches(keys, batchSize: batchSize, groupBySlot: groupBySlot) { $0 }
    }

    /// `keyBatches` for elements that carry a key (`key` gives it), such as a key and what it is counted for.
    static func batches<Element, Key: RedisArgument>(
        _ elements: [Element], batchSize: Int, groupBySlot: Bool, key: (Element) -> Key
    ) -> [ArraySlice<Element>] {
        let groups: [[Element]]
        if groupBySlot {
            var slotOrder: [Int] = []
            var elementsBySlot: [Int: [Element]] = [:]
            for element in elements {
                let slot = HashSlot.slot(of: key(element))
                if elementsBySlot[slot] == nil { slotOrder.append(slot) }
                elementsBySlot[slot, default: []].append(element)
            }
            groups = slotOrder.map { elementsBySlot[$0]! }
        } else {
            groups = [elements]
        }
        return groups.flatMap { group in
            stride(from: 0, to: group.count, by: batchSize).map { start in
                group[start..<min(start + batchSize, group.count)]
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

    /// `PUBLISH channel message`, or `SPUBLISH` for a shard channel.
    static func publish(_ message: PublishMessage) -> [String] {
        [message.sharded ? "SPUBLISH" : "PUBLISH", message.channel, message.message]
    }

    /// `XADD stream * job <job> args <JSON object> [event_id <id>] [occurred_at <ts>]`.
    static func enqueue(_ job: PrecomputeJob) -> [String] {
        var command = ["XADD", job.stream, "*", "job", job.job, "args", job.argumentsJSON.serialized()]
        if let eventID = job.eventID { command += ["event_id", eventID] }
        if let occurredAt = job.occurredAt { command += ["occurred_at", occurredAt] }
        return command
    }

    /// The keys a tag purge keeps next to the tag set `setKey`, in its cluster slot.
    struct TagPurgeKeys: Hashable {
        /// Members being purged: the set is moved (or merged) here, and the key stays
        /// while members in it may still exist, so any later purge finds them.
        var snapshot: String
        /// The token of the purge that last merged into the snapshot: only that purge
        /// has seen every member and may unlink the snapshot.
        var owner: String
    }

    /// One name per tag set, never another set's nor another set's snapshot: a set key
    /// without braces becomes the hash tag itself (`{tag:users}:purging`); any other
    /// takes a tag of its slot and is appended whole (`{1234}:purging:tag:{t}:x`),
    /// since its own braces might not form the tag it needs. So each name says
    /// which form and which set it is. Both start with `{`, so they never collide
    /// with a tag set while the pool's `tag_prefix` does not start with one.
    static func tagPurgeKeys(forTagSet setKey: String) -> TagPurgeKeys {
        if !setKey.isEmpty, !setKey.utf8.contains(UInt8(ascii: "{")), !setKey.utf8.contains(UInt8(ascii: "}")) {
            return TagPurgeKeys(snapshot: "{\(setKey)}:purging", owner: "{\(setKey)}:purge-owner")
        }
        let slotTag = HashSlot.tag(forSlot: HashSlot.slot(of: setKey))
        return TagPurgeKeys(snapshot: "\(slotTag):purging:\(setKey)", owner: "\(slotTag):purge-owner:\(setKey)")
    }

    /// Moves a tag set into its snapshot and makes the caller the snapshot's owner.
    /// A snapshot already there (a purge that failed, crashed or is running, or an
    /// earlier try of this very step whose reply was lost) is merged with, never
    /// overwritten: the smaller set into the larger, so the usual case (no snapshot)
    /// is one RENAME and a merge costs the smaller side. Returns the owner token,
    /// unique to this run of the script, or 0 when neither key exists; WRONGTYPE when
    /// either is not a set (hiding another type is not ours to do).
    static let snapshotTagSetScript = """
        local set, snapshot, owner = KEYS[1], KEYS[2], KEYS[3]
        for _, key in ipairs({set, snapshot}) do
          local kind = redis.call('TYPE', key).ok
          if kind ~= 'none' and kind ~= 'set' then
            return redis.error_reply('WRONGTYPE tag purge: ' .. key .. ' is a ' .. kind .. ', not a set')
          end
        end
        local hasSet, hasSnapshot = redis.call('EXISTS', set) == 1, redis.call('EXISTS', snapshot) == 1
        if not hasSnapshot then
          if not hasSet then
            return 0
          end
          redis.call('RENAME', set, snapshot)
        elseif hasSet then
          local from, into = set, snapshot
          if redis.call('SCARD', set) > redis.call('SCARD', snapshot) then
            from, into = snapshot, set
          end
          local members = redis.call('SMEMBERS', from)
          for first = 1, #members, 1000 do
            redis.call('SADD', into, unpack(members, first, math.min(first + 999, #members)))
          end
          redis.call('UNLINK', from)
          if into == set then
            redis.call('RENAME', set, snapshot)
          end
        end
        local now = redis.call('TIME')
        local token = ARGV[1] .. ':' .. now[1] .. '.' .. now[2]
        redis.call('SET', owner, token)
        return token
        """

    /// `purge` is unique to the calling purge; the script adds the server time, so a
    /// lost try of this step that the server runs late still takes ownership away.
    static func snapshotTagSet(_ setKey: String, keys: TagPurgeKeys, purge: String) -> [String] {
        ["EVAL", snapshotTagSetScript, "3", setKey, keys.snapshot, keys.owner, purge]
    }

    /// Unlinks the snapshot and its owner key if `token` still owns it: returns 1, or 0
    /// when another purge merged into it since (that purge scans every member).
    static let finishTagPurgeScript = """
        if redis.call('GET', KEYS[2]) == ARGV[1] then
          redis.call('UNLINK', KEYS[1], KEYS[2])
          return 1
        end
        return 0
        """

    static func finishTagPurge(_ keys: TagPurgeKeys, token: String) -> [String] {
        ["EVAL", finishTagPurgeScript, "2", keys.snapshot, keys.owner, token]
    }
}
