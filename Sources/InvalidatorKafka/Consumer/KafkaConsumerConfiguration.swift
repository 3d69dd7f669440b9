/// Settings of a `KafkaConsumer`.
package struct KafkaConsumerConfiguration: Sendable {
    /// `bootstrap.servers`: comma-separated `host:port` list.
    package var brokers: String
    /// `group.id`.
    package var group: String
    /// `group.instance.id`: static membership (KIP-345) under this name; nil for a
    /// dynamic member. A static member does not leave the group when it closes: its
    /// partitions wait for it, or for `session.timeout.ms`, before moving.
    package var groupInstanceID: String?
    package var topics: [String]
    /// librdkafka properties passed verbatim (SASL, TLS, fetch tuning ...). They override
    /// `defaultProperties` and the settings above.
    package var properties: [String: String]
    /// Most messages buffered between the poll thread and the event sequence. When the
    /// buffer holds this many, polling stops until the reader takes some (librdkafka keeps
    /// fetching into its own queue, bounded by `queued.max.messages.kbytes`).
    package var maxBufferedMessages: Int
    /// Most messages delivered in one `.messages` event. Batches hold what is already
    /// fetched, so they stay small under light load; under a backlog, 4,000 amortises
    /// per-batch work (drain 215k → 250-320k events/s against 1,000; 8,000 gained nothing).
    package var maxBatchSize: Int
    /// Most memory librdkafka's pre-fetch queue may fill with messages fetched ahead of
    /// the reader: half of it for their payloads (`queued.max.messages.kbytes`), half for
    /// the per-message cost (`queued.min.messages`, counting `bytesPerQueuedMessage` for
    /// each), so neither large nor small messages exceed it. `properties` setting either
    /// limit win over it.
    package var maxBufferedBytes: Int
    /// How long a revoke waits for `KafkaRevocation.complete()` before it proceeds anyway,
    /// and a commit for a group join to end. Keep it below `max.poll.interval.ms` (default 300 s).
    package var revocationTimeout: Duration

    /// Properties set before `properties`: offsets are committed only explicitly,
    /// a new group starts at the earliest offset, and rebalances are cooperative.
    ///
    /// `session.timeout.ms` 10 s, `heartbeat.interval.ms` 1 s: a dead worker's partitions
    /// sit unprocessed, their caches stale, for about the session timeout plus one
    /// heartbeat (the broker drops the silent member, the survivors learn of the
    /// rebalance at their next heartbeat): ~11 s against ~48 s with librdkafka's 45 s / 3 s.
    /// librdkafka heartbeats from its own thread, whatever the poll thread or the
    /// pipeline do, so a live worker misses 10 s of heartbeats only when the whole
    /// process stops (SIGSTOP, a paused VM, swapping) or its network to the coordinator
    /// fails; the price of such a false alarm is a cooperative rebalance of its
    /// partitions and some events applied twice, which deletes tolerate. 10 s is above
    /// the brokers' default floor, `group.min.session.timeout.ms` 6 s. A poll thread that
    /// stops polling (a full buffer behind a stuck pipeline) is left to
    /// `max.poll.interval.ms` (300 s, which must stay at least the session timeout).
    ///
    /// The queue limits come from `maxBufferedBytes` (see `queueProperties`).
    package static let defaultProperties: [String: String] = [
        "enable.auto.commit": "false",
        "enable.auto.offset.store": "false",
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": "10000",
        "heartbeat.interval.ms": "1000",
    ]

    /// `maxBufferedBytes` by default: 163,840 small messages. librdkafka 2.0 compares
    /// `queued.min.messages` with the consumer queue all partitions share, and once it
    /// holds that many, its broker threads fetch only when something else wakes them, so
    /// once the queue is full the drain runs at the pace of those wake-ups (about 130k
    /// events/s against 340k/s from a full queue; 30,000 messages cut a 300k-event drain
    /// to a third). Against the former unbounded queue (everything fetched ahead), in
    /// same-run A/Bs of that drain: 64 MiB peak RSS 103 MiB (from 134-138) at 0.81-0.87x;
    /// 80 MiB 112-115 MiB at 0.82x on a quiet machine (1.04x under load); 96 MiB 122-126
    /// MiB at 1.01x under load. A bounded worker is worth that; a librdkafka that wakes
    /// its fetcher as the queue drains (`fetch.queue.backoff.ms`) would not charge it.
    package static let defaultMaxBufferedBytes = 80 << 20

    /// What one small message queued in librdkafka costs besides its payload: its op and
    /// message structs, and its share of the fetch response it was parsed from, which stays
    /// allocated until its last message is destroyed. Measured: about 250 bytes for the
    /// benchmark's 45-byte events (peak RSS with 300,000 of them queued minus with 30,000).
    package static let bytesPerQueuedMessage = 256

    package init(
        brokers: String,
        group: String,
        groupInstanceID: String? = nil,
        topics: [String],
        properties: [String: String] = [:],
        maxBufferedMessages: Int = 20_000,
        maxBatchSize: Int = 4_000,
        maxBufferedBytes: Int? = nil,
        revocationTimeout: Duration = .seconds(30)
    ) {
        self.brokers = brokers
        self.group = group
        self.groupInstanceID = groupInstanceID
        self.topics = topics
        self.properties = properties
        self.maxBufferedMessages = maxBufferedMessages
        self.maxBatchSize = maxBatchSize
        self.maxBufferedBytes = maxBufferedBytes ?? Self.defaultMaxBufferedBytes
        self.revocationTimeout = revocationTimeout
    }

    /// Every librdkafka property, in the order they are applied.
    ///
    /// A consumer with no topics never joins its group, and librdkafka 2.0 aborts
    /// (`rd_kafka_sticky_assignor_state_destroy: Assertion 'assignor_state'`) when
    /// such a member is destroyed with a sticky assignor: it gets `range`, which
    /// it never uses anyway.
    package var librdkafkaProperties: [(String, String)] {
        var properties = properties
        if topics.isEmpty { properties["partition.assignment.strategy"] = "range" }
        return Self.defaultProperties.sorted { $0.key < $1.key }
            + queueProperties
            + [("bootstrap.servers", brokers), ("group.id", group)]
            + (groupInstanceID.map { [("group.instance.id", $0)] } ?? [])
            + properties.sorted { $0.key < $1.key }
    }

    /// librdkafka's pre-fetch queue limits that keep it within `maxBufferedBytes`.
    var queueProperties: [(String, String)] {
        let half = max(maxBufferedBytes, 0) / 2
        return [
            ("queued.max.messages.kbytes", "\(min(max(half / 1024, 1), 2_097_151))"),
            ("queued.min.messages", "\(min(max(half / Self.bytesPerQueuedMessage, 1), 10_000_000))"),
        ]
    }
}
