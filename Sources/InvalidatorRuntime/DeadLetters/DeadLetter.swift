import InvalidatorCore

/// Where an event came from, precisely enough to find it again.
public enum SourceCoordinates: Sendable, Hashable {
    case kafka(topic: String, partition: Int32, offset: Int64)
    case redisStream(stream: String, entryID: String)
    case redisPubSub(channel: String)
    /// `apply` and `replay --reprocess`.
    case manual

    public var json: JSONValue {
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
public struct DeadLetter: Sendable {
    public enum Reason: String, Sendable {
        case invalidJSON = "invalid-json"
        case schemaViolation = "schema-violation"
        case unresolvedPlaceholder = "unresolved-placeholder"
        case invalidKey = "invalid-key"
        case operationFailed = "operation-failed"
    }

    public var event: [UInt8]
    public var source: SourceCoordinates
    public var reason: Reason
    public var errorClass: String
    public var errorMessage: String
    public var rule: String?
    public var pool: String?
    public var node: String?
    public var operations: [PlannedOperation]
    public var attempts: Int
    /// RFC 3339.
    public var firstFailedAt: String
    public var lastFailedAt: String
    public var worker: String

    public init(
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

    public var json: JSONValue {
        var object: JSONObject = ["version": .number("1")]
        if let text = String(validating: event, as: UTF8.self) {
            object["event"] = .string(text)
        } else {
            object["event_base64"] = .string(Base64.encode(event))
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
        return .object(object)
    }
}

/// Durable storage for dead letters. `write` returns only once every record is
/// stored; it throws when the store is unreachable, and the caller retries.
public protocol DeadLetterStore: Sendable {
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
