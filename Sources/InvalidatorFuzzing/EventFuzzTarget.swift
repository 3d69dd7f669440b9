import InvalidatorCore
import InvalidatorRedis
import InvalidatorRuntime

/// Runs arbitrary bytes through the worker's whole per-event path, as a source
/// would hand them over: decoding (native, Debezium, CloudEvents structured and
/// binary, each plain or with a field mapping, and direct messages), planning with a rules set that uses every feature, metrics, building
/// and encoding the dead-letter records, and decoding those records as `replay` does.
///
/// Input layout: the first byte chooses how the rest is read (see ``Mode``); the
/// rest is the message.
enum EventFuzzTarget {
    /// The first input byte: bits 0–1 the source's format, bits 2–3 the source, bit 4
    /// a broker timestamp in the next 8 bytes (little-endian milliseconds), bit 5 the
    /// mapped variant of the format (`FuzzRules.mappedDecoder`; for auto: direct).
    struct Mode {
        enum Source {
            /// The payload is the message.
            case kafka
            /// The message is a binary-mode CloudEvent: `key:value` header lines, an empty line, then the data.
            case kafkaWithHeaders
            /// Stream entry fields: NUL-separated name, value, name, value ...
            case redisStream
            case redisPubSub
        }

        var decoder: EventDecoder
        var source: Source
        var hasTimestamp: Bool

        init(_ byte: UInt8) {
            let format: EventFormat = [.auto, .native, .debezium, .cloudevents][Int(byte & 3)]
            decoder = byte & 0x20 != 0 ? FuzzRules.mappedDecoder(format) : EventDecoder(format: format)
            source = [.kafka, .redisStream, .redisPubSub, .kafkaWithHeaders][Int(byte >> 2 & 3)]
            hasTimestamp = byte & 0x10 != 0
        }
    }

    static func run(_ data: [UInt8]) -> [String] {
        guard let first = data.first else { return [] }
        let mode = Mode(first)
        var rest = data.dropFirst()
        var timestamp: Int64?
        if mode.hasTimestamp {
            guard rest.count >= 8 else { return [] }
            timestamp = rest.prefix(8).reversed().reduce(Int64(0)) { $0 << 8 | Int64($1) }
            rest = rest.dropFirst(8)
        }
        let event = incomingEvent(Array(rest), mode: mode, timestamp: timestamp)
        return check(event)
    }

    private static func incomingEvent(_ message: [UInt8], mode: Mode, timestamp: Int64?) -> IncomingEvent {
        switch mode.source {
        case .kafka:
            return IncomingEvent(
                source: .kafka(topic: "entity-changes", partition: 0, offset: 0), payload: message, decoder: mode.decoder,
                timestampMilliseconds: timestamp)
        case .kafkaWithHeaders:
            let (headers, payload) = splitHeaders(message)
            return IncomingEvent(
                source: .kafka(topic: "entity-changes", partition: 0, offset: 0), payload: payload, decoder: mode.decoder,
                headers: headers, timestampMilliseconds: timestamp)
        case .redisStream:
            let parts = message.split(separator: 0, omittingEmptySubsequences: false).map(Array.init)
            let fields = stride(from: 0, to: parts.count - 1, by: 2).map { (name: parts[$0], value: parts[$0 + 1]) }
            return IncomingEvent(
                source: .redisStream(stream: "entity-changes", entryID: "1-0"),
                payload: RedisStreamSource.payload(of: fields), decoder: mode.decoder, timestampMilliseconds: timestamp)
        case .redisPubSub:
            return IncomingEvent(source: .redisPubSub(channel: "entity-changes"), payload: message, decoder: mode.decoder)
        }
    }

    /// `key:value` lines up to the first empty line are headers; what follows is the payload.
    private static func splitHeaders(_ message: [UInt8]) -> ([(key: String, value: [UInt8]?)], [UInt8]) {
        var headers: [(key: String, value: [UInt8]?)] = []
        var lines = message.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)[...]
        while let line = lines.first, !line.isEmpty {
            lines = lines.dropFirst()
            let colon = line.firstIndex(of: UInt8(ascii: ":")) ?? line.endIndex
            let value = colon < line.endIndex ? Array(line[(colon + 1)...]) : nil
            headers.append((key: String(decoding: line[..<colon], as: UTF8.self), value: value))
        }
        let payload = Array(lines.dropFirst().joined(separator: [UInt8(ascii: "\n")]))
        return (headers, payload)
    }

    /// Prepares the event as the worker does, then checks what a worker and a later
    /// `replay` would make of it. Returns the invariants that did not hold.
    static func check(_ event: IncomingEvent) -> [String] {
        var problems: [String] = []
        let preparer = BatchPreparer(workerID: "fuzz")
        let prepared = preparer.prepare([event][...], in: [event], planner: FuzzRules.planner, now: "2026-11-30T00:00:00.000Z")
        WorkerMetrics.disabled.recordOutcomes(of: prepared, failed: [])
        WorkerMetrics.disabled.recordOutcomes(of: prepared, failed: Set(prepared.plans.indices))

        if prepared.plans.count + prepared.rejected.count > 1 {
            problems.append("one event gave \(prepared.plans.count) plans and \(prepared.rejected.count) rejections")
        }
        var records = prepared.rejected
        for plan in prepared.plans {
            _ = PlanDescription.text(plan)
            _ = PlanDescription.json(plan).serialized()
            problems += PlanInvariants.check(plan)
            for pool in plan.pools {
                let failure = NodeFailure(
                    pool: pool.pool, node: "127.0.0.1:6379", operations: pool.operations,
                    error: RedisError(code: .timeout, message: "fuzz"), attempts: 3)
                records.append(preparer.deadLetter(event, failure: failure))
            }
        }
        for record in records {
            problems += checkRoundTrip(record, decoder: event.decoder, plannedBefore: prepared.plans.first)
        }
        return problems
    }

    /// A record survives encoding, and its event decodes and plans as it did in the worker.
    private static func checkRoundTrip(_ record: DeadLetter, decoder: EventDecoder, plannedBefore: Plan?) -> [String] {
        let text = record.json.serialized()
        let decoded: DeadLetter
        do {
            decoded = try DeadLetter(jsonText: text)
        } catch {
            return ["a record the worker wrote is unreadable: \(error)"]
        }
        var problems: [String] = []
        if decoded.json != record.json { problems.append("a record changed through JSON: \(text)") }
        if decoded.event != record.event || decoded.headers != record.headers {
            problems.append("a record's event or headers changed through JSON")
        }
        switch Replayer.decodeEvent(decoded, decoder: decoder) {
        case .success(let message):
            let replanned = FuzzRules.planner.plan(message)
            if let plannedBefore, replanned.pools != plannedBefore.pools {
                problems.append("replay plans the event differently from the worker")
            }
            if record.reason == .invalidJSON || record.reason == .schemaViolation {
                problems.append("replay decodes an event the worker rejected as \(record.reason.rawValue)")
            }
        case .failure(let error):
            if record.reason != .invalidJSON && record.reason != .schemaViolation {
                problems.append("replay cannot decode an event the worker decoded: \(error.message)")
            }
        }
        return problems
    }
}
