/// The wire format of change events on a source.
public enum EventFormat: String, Hashable, Sendable, CaseIterable {
    /// invalidator's own JSON (schemas/change-event.schema.json).
    case native
    /// Debezium change events: `payload.before/after/op/source.table`, with or without the schema envelope.
    case debezium
    /// CloudEvents 1.0 in structured JSON mode whose `data` is a native event.
    case cloudevents
    /// Direct invalidation messages naming keys, patterns and tags to drop
    /// (`DirectInvalidation`), checked against the source's allow-list. Never detected.
    case direct
    /// Detect per message from its top-level fields.
    case auto
}

/// Why an event could not be decoded. Both reasons dead-letter the event.
public struct EventDecodingError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Reason: String, Hashable, Sendable {
        case invalidJSON = "invalid-json"
        case schemaViolation = "schema-violation"
    }

    public var reason: Reason
    public var message: String

    public init(_ reason: Reason, _ message: String) {
        self.reason = reason
        self.message = message
    }

    public var description: String { "\(reason.rawValue): \(message)" }
}
