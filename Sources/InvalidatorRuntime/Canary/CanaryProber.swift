import Foundation
import InvalidatorCore
import InvalidatorKafka
import InvalidatorRedis
import Logging
import Synchronization

/// Where a canary event is emitted: one Kafka topic, Redis stream or pub/sub channel.
package struct CanarySource: Hashable, Sendable, CustomStringConvertible {
    package enum Kind: String, Hashable, Sendable {
        case kafka
        case redisStream = "redis_stream"
        case redisPubSub = "redis_pubsub"
    }

    package var kind: Kind
    /// The topic, stream or channel.
    package var name: String
    /// The pool of a Redis source.
    package var pool: String?

    /// The `source` label: `kafka:TOPIC`, `redis_stream:STREAM` or `redis_pubsub:CHANNEL`.
    package var description: String { "\(kind.rawValue):\(name)" }

    /// Every topic, stream and literal channel of `sources` (pattern subscriptions
    /// have no channel to publish on, so they carry no canary).
    package static func all(in sources: Sources) -> [CanarySource] {
        (sources.kafka?.topics.map { CanarySource(kind: .kafka, name: $0) } ?? [])
            + (sources.redisStream.map { stream in stream.streams.map { CanarySource(kind: .redisStream, name: $0, pool: stream.pool) } } ?? [])
            + (sources.redisPubSub.map { pubSub in pubSub.channels.map { CanarySource(kind: .redisPubSub, name: $0, pool: pubSub.pool) } } ?? [])
    }
}

/// How one canary round went for one source and pool.
package struct CanaryResult: Hashable, Sendable {
    package var source: CanarySource
    package var pool: String
    /// Emit to the key gone on the pool's last node; nil when the round failed.
    package var latency: Duration?
    /// Why the round failed: the nodes still holding the key at the timeout, or the
    /// error that stopped the round (writing the key, emitting the event).
    package var failure: String?

    package var passed: Bool { failure == nil }

    package var seconds: Double? { latency.map { Double($0.milliseconds) / 1000 } }
}

/// Runs canary rounds: per source, writes the canary key on every node of each
/// canary pool (the nodes a delete of it reaches), emits a canary change event
/// through the source itself, and polls, on connections of its own, until the
/// key is gone on every node or the timeout passed. Whichever worker of the
/// group consumes the event applies it, so the whole group is what is measured.
///
/// Per node and round: one SET (with a TTL of twice the timeout and ten seconds, so
/// a key whose event is never applied expires by itself) and a few EXISTS (about 5 when the
/// key goes within 100 ms, then 4 a second); per source one event.
package final class CanaryProber: Sendable {
    package let canary: CanaryConfiguration
    package let sources: [CanarySource]
    private let pools: [RedisPool]
    private let sourcePools: PoolSet
    private let producer: KafkaProducer?
    private let workerID: String
    private let sequence = Atomic<Int>(0)
    /// The prober's own connection per pool and node, apart from the pipeline's (two
    /// pools may share a node with other credentials or databases).
    private let connections = Mutex<[String: [RedisEndpoint: RedisConnection]]>([:])
    private let logger: Logger

    /// First and longest wait between two EXISTS polls. Doubling from 10 ms keeps
    /// the figure within a factor of two of the real latency for a fast pipeline
    /// (a fixed 100 ms would round every healthy round up to 100 ms) for a handful
    /// of EXISTS more, then settles at 4 polls a second.
    static let firstPollInterval: Duration = .milliseconds(10)

    /// How long a canary key lives if its event is never applied: twice the timeout, and
    /// ten seconds more, so a key can never expire by itself while the round still polls
    /// it (a slow machine's last poll may start late) and pass for one the worker deleted.
    static func keyLifetime(timeout: Duration) -> Duration {
        timeout * 2 + .seconds(10)
    }
    static let longestPollInterval: Duration = .milliseconds(250)

    /// - Throws: ``KafkaError`` when the producer for the Kafka source cannot be created.
    package init(
        configuration: Configuration, canary: CanaryConfiguration? = nil, pools: PoolSet, workerID: String, logger: Logger
    ) throws(KafkaError) {
        let canary = canary ?? configuration.canary
        self.canary = canary
        self.sources = CanarySource.all(in: configuration.sources)
        let names = canary.targetPools(in: configuration.pools.map(\.name))
        self.pools = names.compactMap { pools.pool(named: $0) }
        self.sourcePools = pools
        if let kafka = configuration.sources.kafka, !kafka.topics.isEmpty {
            self.producer = try KafkaProducer(
                configuration: KafkaProducerConfiguration(
                    brokers: kafka.brokers, properties: KafkaDeadLetterStore.producerProperties(fromSource: kafka.properties)),
                logger: logger)
        } else {
            self.producer = nil
        }
        self.workerID = workerID
        self.logger = logger
    }

    /// One round for every source at once; results per source and pool, in source order.
    package func round() async -> [CanaryResult] {
        await withTaskGroup(of: (Int, [CanaryResult]).self) { group in
            for (index, source) in sources.enumerated() {
                group.addTask { (index, await self.round(for: source)) }
            }
            var results: [[CanaryResult]] = Array(repeating: [], count: sources.count)
            for await (index, sourceResults) in group { results[index] = sourceResults }
            return results.flatMap { $0 }
        }
    }

    /// Releases the producer and the prober's connections.
    package func close() async {
        await producer?.close(timeout: .seconds(2))
        let open = connections.withLock { connections in
            defer { connections.removeAll() }
            return connections.values.flatMap(\.values)
        }
        for connection in open { await connection.close() }
    }

    private func round(for source: CanarySource) async -> [CanaryResult] {
        let number = sequence.add(1, ordering: .relaxed).newValue
        let id = "\(workerID).\(source).\(number)"
        let key = canary.key(for: id)
        func failed(_ reason: String) -> [CanaryResult] {
            pools.map { CanaryResult(source: source, pool: $0.configuration.name, latency: nil, failure: reason) }
        }
        var nodesByPool: [(pool: RedisPool, nodes: [RedisEndpoint])] = []
        let ttl = String(Self.keyLifetime(timeout: canary.timeout).milliseconds)
        for pool in pools {
            do throws(RedisError) {
                let nodes = try await pool.nodes(forKey: key)
                for node in nodes {
                    let reply = try await connection(to: node, of: pool).send(["SET", key, "1", "PX", ttl])
                    if let error = reply.error { throw error }
                }
                nodesByPool.append((pool, nodes))
            } catch {
                return failed("writing the canary key on pool '\(pool.configuration.name)' failed: \(error)")
            }
        }
        let start = ContinuousClock.now
        do {
            try await emit(id: id, through: source)
        } catch {
            return failed("emitting the canary event failed: \(error)")
        }
        let deadline = start + canary.timeout
        return await withTaskGroup(of: CanaryResult.self) { group in
            for (pool, nodes) in nodesByPool {
                group.addTask {
                    let (remaining, goneBy) = await self.waitUntilGone(key, on: nodes, of: pool, until: deadline)
                    guard let goneBy else {
                        let list = remaining.map(\.description).joined(separator: ", ")
                        return CanaryResult(
                            source: source, pool: pool.configuration.name, latency: nil,
                            failure: "the canary key was still on \(list) after \(DurationParser.format(self.canary.timeout))")
                    }
                    return CanaryResult(source: source, pool: pool.configuration.name, latency: goneBy - start, failure: nil)
                }
            }
            var results: [CanaryResult] = []
            for await result in group { results.append(result) }
            return pools.compactMap { pool in results.first { $0.pool == pool.configuration.name } }
        }
    }

    /// When the poll that found `key` gone from every node started (never after
    /// `deadline`), or nil with the nodes where it still existed (or could not be checked).
    private func waitUntilGone(
        _ key: String, on nodes: [RedisEndpoint], of pool: RedisPool, until deadline: ContinuousClock.Instant
    ) async -> (remaining: [RedisEndpoint], goneBy: ContinuousClock.Instant?) {
        var remaining = nodes
        var pause = Self.firstPollInterval
        while true {
            let pollStarted = ContinuousClock.now
            var stillThere: [RedisEndpoint] = []
            for node in remaining {
                let reply = try? await connection(to: node, of: pool).send(["EXISTS", key])
                if reply?.integer != 0 { stillThere.append(node) }
            }
            remaining = stillThere
            if remaining.isEmpty { return ([], pollStarted) }
            if pollStarted >= deadline || Task.isCancelled { return (remaining, nil) }
            try? await Task.sleep(until: min(.now + pause, deadline))
            pause = min(pause * 2, Self.longestPollInterval)
        }
    }

    private func connection(to node: RedisEndpoint, of pool: RedisPool) -> RedisConnection {
        connections.withLock { connections in
            if let connection = connections[pool.configuration.name]?[node] { return connection }
            let connection = pool.dedicatedConnection(to: node)
            connections[pool.configuration.name, default: [:]][node] = connection
            return connection
        }
    }

    /// Sends the canary event through the source as a publisher would.
    private func emit(id: String, through source: CanarySource) async throws {
        let event: JSONObject = [
            "entity": .string(canary.entity), "id": .string(id), "op": .string("update"), "event_id": .string(id),
            "occurred_at": .string(RFC3339.format(millisecondsSinceEpoch: Int64(Date().timeIntervalSince1970 * 1000))),
        ]
        let payload = JSONValue.object(event).serialized()
        switch source.kind {
        case .kafka:
            guard let producer else { throw CanaryEmitError("no Kafka producer") }
            try await producer.produce(KafkaProducerRecord(topic: source.name, key: Array(id.utf8), value: Array(payload.utf8)))
        case .redisStream, .redisPubSub:
            guard let name = source.pool, let pool = sourcePools.pool(named: name) else {
                throw CanaryEmitError("the source's pool is not configured")
            }
            let command = source.kind == .redisStream
                ? ["XADD", source.name, "*", RedisStreamSource.eventField, payload]
                : ["PUBLISH", source.name, payload]
            let reply = try await pool.pipeline([command], routingKey: source.name).first
            if let error = reply?.error { throw error }
        }
    }
}

/// Why a canary event could not be emitted, other than a Redis or Kafka error.
package struct CanaryEmitError: Error, CustomStringConvertible, Sendable {
    package var description: String
    package var isRetriable: Bool { false }
    init(_ description: String) { self.description = description }
}
