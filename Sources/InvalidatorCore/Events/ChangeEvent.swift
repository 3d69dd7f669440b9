/// What happened to an entity, whatever wire format it arrived in.
public struct ChangeEvent: Hashable, Sendable {
    public enum Operation: String, Hashable, Sendable, CaseIterable {
        case create, update, delete, read
    }

    public var entity: String
    /// One id, or several for a bulk change. Never empty.
    public var ids: [String]
    public var op: Operation
    public var tenant: String?
    /// Field names the producer says changed; nil when it did not say.
    public var changed: [String]?
    public var attributes: JSONObject
    public var before: JSONObject?
    public var after: JSONObject?
    /// Source text of the version (a number or a string).
    public var version: String?
    /// RFC 3339 time the change happened, as sent.
    public var occurredAt: String?
    public var eventID: String?

    public init(
        entity: String, ids: [String], op: Operation, tenant: String? = nil, changed: [String]? = nil,
        attributes: JSONObject = JSONObject(), before: JSONObject? = nil, after: JSONObject? = nil,
        version: String? = nil, occurredAt: String? = nil, eventID: String? = nil
    ) {
        self.entity = entity
        self.ids = ids
        self.op = op
        self.tenant = tenant
        self.changed = changed
        self.attributes = attributes
        self.before = before
        self.after = after
        self.version = version
        self.occurredAt = occurredAt
        self.eventID = eventID
    }

    /// The changed fields: as sent, else the fields whose value differs between
    /// `before` and `after`, else nil (unknown, so every `changed` filter matches:
    /// a missed invalidation is worse than an extra one).
    public var effectiveChanged: [String]? {
        if let changed { return changed }
        guard let before, let after else { return nil }
        var names: [String] = []
        // Linear lookups suit the usual dozen fields; a huge row must not cost fields².
        if before.fields.count + after.fields.count > Self.linearComparisonLimit {
            let beforeValues = Dictionary(before.fields.map { ($0.key, $0.value) }, uniquingKeysWith: { _, last in last })
            let afterKeys = Set(after.fields.map(\.key))
            for field in after.fields where beforeValues[field.key] != field.value {
                names.append(field.key)
            }
            for field in before.fields where !afterKeys.contains(field.key) {
                names.append(field.key)
            }
            return names
        }
        for field in after.fields where before[field.key] != field.value {
            names.append(field.key)
        }
        for field in before.fields where after[field.key] == nil {
            names.append(field.key)
        }
        return names
    }

    private static let linearComparisonLimit = 64

    /// Most ids one event may carry: every template using `{id}` renders once per
    /// id, so a bulk change beyond this is refused rather than planned at length.
    public static let maximumIDs = 10_000
}
