import InvalidatorCore

/// Where an event came from, precisely enough to find it again.
package enum SourceCoordinates: Sendable, Hashable {
    case kafka(topic: String, partition: Int32, offset: Int64)
    case redisStream(stream: String, entryID: String)
    case redisPubSub(channel: String)
    /// `apply` and `replay --reprocess`.
    case manual

    package var json: JSONValue {
        switch self {
        case .kafka(let topic, let partition, let offset):
            .object(["kind": .string("kafka"), "topic": .string(topic),
                     "partition": .number(String(partition)), "offset": .number(String(offset))])
        case .redisStream(let stream, let entryID):
            .object(["kind": .string("redis_stream"), "stream": .string(stream), "entry_id": .string(entryID)])
        case .redisPubSub(let channel):
            .object(["kind": .string("redis_pubsub"), "channel": .string(channel)])
        case .manual:
            .object(["kind": .string("manual")])
        }
    }
}

/// One invalidation that could not be applied (schemas/dead-letter.schema.json).
/// An event that failed on two nodes yields two records, each with only the
/// operations that failed there.
package struct DeadLetter: Sendable {
    package enum Reason: String, Sendable, CaseIterable {
        case invalidJSON = "invalid-json"
        case schemaViolation = "schema-violation"
        case unresolvedPlaceholder = "unresolved-placeholder"
        case invalidKey = "invalid-key"
        /// A direct message asked for a key, pattern or tag outside its source's allow-list.
        case notAllowed = "not-allowed"
        case operationFailed = "operation-failed"
        /// A webhook target did not take the record's items after every retry.
        case deliveryFailed = "delivery-failed"

        /// An event that cannot be decoded is dead-lettered with its decoding reason.
        package init(_ reason: EventDecodingError.Reason) {
            switch reason {
            case .invalidJSON: self = .invalidJSON
            case .schemaViolation: self = .schemaViolation
            }
        }

        /// An event the rules cannot plan is dead-lettered with the rejection's reason.
        package init(_ reason: PlanRejection.Reason) {
            switch reason {
            case .unresolvedPlaceholder: self = .unresolvedPlaceholder
            case .invalidKey: self = .invalidKey
            case .notAllowed: self = .notAllowed
            }
        }
    }

    package var event: [UInt8]
    package var source: SourceCoordinates
    package var reason: Reason
    package var errorClass: String
    package var errorMessage: String
    package var rule: String?
    package var pool: String?
    package var node: String?
    package var operations: [PlannedOperation]
    package var attempts: Int
    /// RFC 3339.
    package var firstFailedAt: String
    package var lastFailedAt: String
    package var worker: String
    /// Message headers needed to decode the event again (CloudEvents binary mode
    /// `ce_*`), as bytes: a value that is not UTF-8 must be rejected again on replay, not repaired.
    package var headers: [String: [UInt8]] = [:]
    /// The webhook target of a `delivery-failed` record, and the items it did not take.
    package var target: String?
    package var webhooks: [WebhookItem] = []
    /// Work for the layers behind Redis (`notify`, `webhook`) that waits for this
    /// record's operations: it runs when they succeed on replay, never before.
    package var pending: SecondLayerWork?

    package init(
        event: [UInt8], source: SourceCoordinates, reason: Reason, errorClass: String, errorMessage: String,
        rule: String? = nil, pool: String? = nil, node: String? = nil, operations: [PlannedOperation] = [],
        attempts: Int = 1, failedAt: String, worker: String
    ) {
        self.event = event
        self.source = source
        self.reason = reason
        self.errorClass = errorClass
        self.errorMessage = errorMessage
        self.rule = rule
        self.pool = pool
        self.node = node
        self.operations = operations
        self.attempts = attempts
        self.firstFailedAt = failedAt
        self.lastFailedAt = failedAt
        self.worker = worker
    }

    package var json: JSONValue {
        var object: JSONObject = ["version": .number("1")]
        if let text = String(validating: event, as: UTF8.self) {
            object["event"] = .string(text)
        } else {
            object["event_base64"] = .string(Base64.encode(event))
        }
        if !headers.isEmpty {
            object["headers"] = .object(JSONObject(headers.sorted { $0.key < $1.key }.map { header in
                let value: JSONValue = String(validating: header.value, as: UTF8.self).map(JSONValue.string)
                    ?? .object(["base64": .string(Base64.encode(header.value))])
                return JSONObject.Field(key: header.key, value: value)
            }))
        }
        object["source"] = source.json
        object["reason"] = .string(reason.rawValue)
        object["error"] = .object(["class": .string(errorClass), "message": .string(errorMessage)])
        object["rule"] = rule.map(JSONValue.string) ?? .null
        object["pool"] = pool.map(JSONValue.string) ?? .null
        object["node"] = node.map(JSONValue.string) ?? .null
        object["operations"] = .array(operations.map(PlanDescription.operationJSON))
        object["attempts"] = .number(String(attempts))
        object["first_failed_at"] = .string(firstFailedAt)
        object["last_failed_at"] = .string(lastFailedAt)
        object["worker"] = .string(worker)
        if let target {
            object["target"] = .string(target)
            object["webhooks"] = .array(webhooks.map(\.json))
        }
        if let pending, !pending.isEmpty { object["after"] = pending.json }
        return .object(object)
    }
}

/// Durable storage for dead letters. `write` returns only once every record is
/// stored; it throws when the store is unreachable, and the caller retries.
package protocol DeadLetterStore: Sendable {
    func write(_ records: [DeadLetter]) async throws
}

enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var output: [UInt8] = []
        output.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index < bytes.count {
            let chunk = bytes[index..<min(index + 3, bytes.count)]
            let value = chunk.enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (16 - 8 * UInt32($1.offset)) }
            for position in 0..<4 {
                output.append(position <= chunk.count ? alphabet[Int(value >> (18 - 6 * UInt32(position)) & 0x3F)] : UInt8(ascii: "="))
            }
            index += 3
        }
        return String(decoding: output, as: UTF8.self)
    }
}

// MARK: - Reading records back

/// A stored dead-letter record that is not a version-1 record as
/// schemas/dead-letter.schema.json describes it.
package struct DeadLetterDecodingError: Error, CustomStringConvertible, Sendable {
    package var description: String
    package init(_ description: String) { self.description = description }
}

extension DeadLetter {
    /// Decodes a record written by ``json``.
    package init(json value: JSONValue) throws(DeadLetterDecodingError) {
        guard let object = value.objectValue else { throw DeadLetterDecodingError("the record is not a JSON object") }
        guard object["version"]?.scalarText == "1" else {
            throw DeadLetterDecodingError("unsupported record version \(object["version"]?.serialized() ?? "(none)")")
        }
        func string(_ key: String) throws(DeadLetterDecodingError) -> String {
            guard let text = object[key]?.stringValue else { throw DeadLetterDecodingError("the record has no string \(key)") }
            return text
        }
        func optionalString(_ key: String) -> String? { object[key]?.stringValue }

        let event: [UInt8]
        if let text = object["event"]?.stringValue {
            event = Array(text.utf8)
        } else if let encoded = object["event_base64"]?.stringValue, let bytes = Base64.decode(encoded) {
            event = bytes
        } else {
            throw DeadLetterDecodingError("the record has neither event nor event_base64")
        }
        guard let source = object["source"].flatMap(SourceCoordinates.init(json:)) else {
            throw DeadLetterDecodingError("the record has no valid source")
        }
        guard let reason = Reason(rawValue: try string("reason")) else {
            throw DeadLetterDecodingError("unknown reason \(object["reason"]?.serialized() ?? "")")
        }
        guard let error = object["error"]?.objectValue, let errorClass = error["class"]?.stringValue,
              let errorMessage = error["message"]?.stringValue
        else { throw DeadLetterDecodingError("the record has no error.class and error.message") }
        guard let operationValues = object["operations"]?.arrayValue else {
            throw DeadLetterDecodingError("the record has no operations array")
        }
        var operations: [PlannedOperation] = []
        for (index, operation) in operationValues.enumerated() {
            guard let planned = PlanDescription.plannedOperation(json: operation) else {
                throw DeadLetterDecodingError("operations[\(index)] is not a valid operation")
            }
            operations.append(planned)
        }
        // 0: never sent, the node's circuit was open (records of every earlier version say so too).
        guard let attemptsText = object["attempts"]?.scalarText, let attempts = Int(attemptsText), attempts >= 0 else {
            throw DeadLetterDecodingError("the record has no valid attempts")
        }
        self.init(
            event: event, source: source, reason: reason, errorClass: errorClass, errorMessage: errorMessage,
            rule: optionalString("rule"), pool: optionalString("pool"), node: optionalString("node"),
            operations: operations, attempts: attempts, failedAt: try string("first_failed_at"),
            worker: optionalString("worker") ?? "")
        self.lastFailedAt = try string("last_failed_at")
        if let target = object["target"]?.stringValue {
            self.target = target
            self.webhooks = try WebhookItem.items(json: object["webhooks"], field: "webhooks")
        }
        if let after = object["after"] {
            self.pending = try SecondLayerWork(json: after)
        }
        if let headers = object["headers"]?.objectValue {
            self.headers = Dictionary(headers.fields.compactMap { field in Self.headerValue(field.value).map { (field.key, $0) } },
                                      uniquingKeysWith: { _, last in last })
        }
    }

    /// A header as ``json`` writes it: its text, or `{"base64": ...}` when it is not UTF-8.
    private static func headerValue(_ value: JSONValue) -> [UInt8]? {
        if let text = value.stringValue { return Array(text.utf8) }
        return value.objectValue?["base64"]?.stringValue.flatMap(Base64.decode)
    }

    /// Decodes a record from its JSON text.
    package init(jsonText: String) throws(DeadLetterDecodingError) {
        let value: JSONValue
        do {
            value = try JSONParser.parse(bytes: Array(jsonText.utf8))
        } catch {
            throw DeadLetterDecodingError("the record is not JSON: \(error)")
        }
        try self.init(json: value)
    }
}

extension SourceCoordinates {
    package init?(json value: JSONValue) {
        guard let object = value.objectValue, let kind = object["kind"]?.stringValue else { return nil }
        switch kind {
        case "kafka":
            guard let topic = object["topic"]?.stringValue,
                  let partition = object["partition"]?.scalarText.flatMap({ Int32($0) }),
                  let offset = object["offset"]?.scalarText.flatMap({ Int64($0) })
            else { return nil }
            self = .kafka(topic: topic, partition: partition, offset: offset)
        case "redis_stream":
            guard let stream = object["stream"]?.stringValue, let entryID = object["entry_id"]?.stringValue else { return nil }
            self = .redisStream(stream: stream, entryID: entryID)
        case "redis_pubsub":
            guard let channel = object["channel"]?.stringValue else { return nil }
            self = .redisPubSub(channel: channel)
        case "manual":
            self = .manual
        default:
            return nil
        }
    }
}

extension PlanDescription {
    /// The inverse of ``operationJSON(_:)``. Precompute jobs come back without
    /// `event_id` and `occurred_at`, which the shape does not carry.
    package static func plannedOperation(json value: JSONValue) -> PlannedOperation? {
        guard let object = value.objectValue, let kind = object["kind"]?.stringValue.flatMap(CacheOperation.Kind.init(rawValue:)),
              let rule = object["rule"]?.stringValue
        else { return nil }
        let operation: CacheOperation
        switch kind {
        case .delete:
            guard let key = object["key"]?.stringValue else { return nil }
            operation = .delete(key: key)
        case .bump:
            guard let key = object["key"]?.stringValue else { return nil }
            operation = .bump(key: key)
        case .pattern:
            guard let pattern = object["pattern"]?.stringValue else { return nil }
            operation = .deletePattern(pattern: pattern)
        case .tag:
            guard let set = object["set"]?.stringValue else { return nil }
            operation = .purgeTag(setKey: set)
        case .expire:
            guard let key = object["key"]?.stringValue, let ttl = object["ttl_ms"]?.scalarText.flatMap({ Int64($0) }) else { return nil }
            operation = .expire(key: key, ttlMilliseconds: ttl)
        case .notify:
            guard let channel = object["channel"]?.stringValue, let message = object["message"]?.stringValue else { return nil }
            operation = .publish(PublishMessage(channel: channel, message: message, sharded: object["sharded"] == .bool(true)))
        case .precompute:
            guard let stream = object["stream"]?.stringValue, let job = object["job"]?.stringValue else { return nil }
            let args = (object["args"]?.objectValue?.fields ?? []).compactMap { field in
                field.value.stringValue.map { PrecomputeJob.Argument(name: field.key, value: $0) }
            }
            operation = .precompute(PrecomputeJob(stream: stream, job: job, args: args, eventID: nil, occurredAt: nil))
        }
        return PlannedOperation(operation, rule: rule)
    }
}

extension Base64 {
    static func decode(_ text: String) -> [UInt8]? {
        var values: [UInt8] = []
        values.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): values.append(byte - UInt8(ascii: "A"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): values.append(byte - UInt8(ascii: "a") + 26)
            case UInt8(ascii: "0")...UInt8(ascii: "9"): values.append(byte - UInt8(ascii: "0") + 52)
            case UInt8(ascii: "+"): values.append(62)
            case UInt8(ascii: "/"): values.append(63)
            case UInt8(ascii: "="), UInt8(ascii: "\n"), UInt8(ascii: "\r"): continue
            default: return nil
            }
        }
        guard values.count % 4 != 1 else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(values.count * 3 / 4)
        var index = 0
        while index < values.count {
            let chunk = values[index..<min(index + 4, values.count)]
            let value = chunk.enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (18 - 6 * UInt32($1.offset)) }
            for position in 0..<(chunk.count - 1) {
                output.append(UInt8(truncatingIfNeeded: value >> (16 - 8 * UInt32(position))))
            }
            index += 4
        }
        return output
    }
}
