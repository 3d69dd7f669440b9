/// A message decoded as its source's format says.
public enum DecodedMessage: Hashable, Sendable {
    case change(ChangeEvent)
    case direct(DirectInvalidation)
}

extension DecodedMessage {
    /// The change, or a direct message as the `ChangeEvent` its plan records.
    public var summary: ChangeEvent {
        switch self {
        case .change(let event): event
        case .direct(let direct): direct.summaryEvent
        }
    }
}

/// Turns message bytes into a `ChangeEvent` (or, for `format: direct`, a
/// `DirectInvalidation`), reading fields where the source's mapping says.
public struct EventDecoder: Hashable, Sendable {
    public var format: EventFormat
    public var fields: FieldMapping
    /// The allow-list and pools of a `format: direct` source; nil otherwise.
    public var direct: DirectInvalidationPolicy?
    /// Messages whose top-level `entity` is this are canary events, read as native
    /// ones whatever `format` and `fields` say, so every source carries them.
    public var canaryEntity: String?

    public init(
        format: EventFormat = .auto, fields: FieldMapping = FieldMapping(), direct: DirectInvalidationPolicy? = nil,
        canaryEntity: String? = nil
    ) {
        self.format = format
        self.fields = fields
        self.direct = direct
        self.canaryEntity = canaryEntity
    }

    /// The message as the source's format reads it; `cloudEventHeaders` are the
    /// message's `ce_*` headers, which make it a binary-mode CloudEvent.
    public func decodeMessage(_ bytes: [UInt8], cloudEventHeaders: [String: [UInt8]] = [:]) throws(EventDecodingError) -> DecodedMessage {
        if Self.isBinaryCloudEvent(headers: cloudEventHeaders), format == .auto || format == .cloudevents {
            return .change(try decodeCloudEventBinary(headers: cloudEventHeaders, data: bytes))
        }
        let object = try Self.parseObject(bytes)
        if let canaryEntity, case .string(canaryEntity)? = object["entity"] {
            return .change(try Self.decodeNative(object))
        }
        if format == .direct {
            guard let direct else {
                throw EventDecodingError(.schemaViolation, "a direct message needs its source's allow-list to be read")
            }
            return .direct(try Self.decodeDirect(object, fields: fields, policy: direct))
        }
        return .change(try decode(object))
    }

    public func decode(_ bytes: [UInt8]) throws(EventDecodingError) -> ChangeEvent {
        try decode(Self.parseObject(bytes))
    }

    private static func parseObject(_ bytes: [UInt8]) throws(EventDecodingError) -> JSONObject {
        let document: JSONValue
        do {
            document = try JSONParser.parse(bytes: bytes)
        } catch {
            throw EventDecodingError(.invalidJSON, error.description)
        }
        guard case .object(let object) = document else {
            throw EventDecodingError(.schemaViolation, "an event must be a JSON object")
        }
        return object
    }

    public func decode(_ object: JSONObject) throws(EventDecodingError) -> ChangeEvent {
        switch format == .auto ? Self.detectFormat(of: object) : format {
        case .native, .auto: return try Self.decodeNative(fields.canonicalized(object))
        case .debezium: return try Self.decodeDebezium(object, fields: fields)
        case .cloudevents: return try Self.decodeCloudEvent(object, fields: fields)
        case .direct: throw EventDecodingError(.schemaViolation, "a direct message names keys to drop, not a change")
        }
    }

    /// The prefix of the message headers that carry a binary-mode CloudEvent's attributes.
    public static let cloudEventHeaderPrefix = "ce_"

    /// Whether a message with these `ce_*` headers is a binary-mode CloudEvent: the
    /// worker and `replay` must decide alike, or a replay would read another event.
    public static func isBinaryCloudEvent(headers: [String: [UInt8]]) -> Bool {
        headers["ce_specversion"] != nil
    }

    /// CloudEvents binary mode: context attributes from the message's `ce_*`
    /// `headers` (prefix included; other headers are ignored), the body is `data`,
    /// a native event. A header that is not UTF-8 makes the event invalid rather
    /// than being repaired into text that could become part of a key.
    public func decodeCloudEventBinary(headers: [String: [UInt8]], data: [UInt8]) throws(EventDecodingError) -> ChangeEvent {
        var attributes: [String: String] = [:]
        for (key, value) in headers where key.hasPrefix(Self.cloudEventHeaderPrefix) {
            guard let text = String(validating: value, as: UTF8.self) else {
                throw EventDecodingError(.invalidJSON, "CloudEvent header \(key) is not valid UTF-8")
            }
            attributes[String(key.dropFirst(Self.cloudEventHeaderPrefix.count))] = text
        }
        for required in ["specversion", "id", "source", "type"] where attributes[required] == nil {
            throw EventDecodingError(.schemaViolation, "CloudEvent header ce_\(required) is missing")
        }
        let document: JSONValue
        do {
            document = try JSONParser.parse(bytes: data)
        } catch {
            throw EventDecodingError(.invalidJSON, error.description)
        }
        guard case .object(let object) = document else {
            throw EventDecodingError(.schemaViolation, "CloudEvent data must be a JSON object")
        }
        return try Self.applyCloudEventDefaults(
            to: Self.decodeNative(fields.canonicalized(object)), id: attributes["id"], time: attributes["time"], tenant: attributes["tenant"])
    }

    static func detectFormat(of object: JSONObject) -> EventFormat {
        if object["specversion"] != nil { return .cloudevents }
        if object["payload"]?.objectValue != nil { return .debezium }
        if object["source"]?.objectValue != nil, object["op"] != nil, object["entity"] == nil { return .debezium }
        return .native
    }

    // MARK: Native

    /// Finds the fields in one pass over the object instead of a lookup per field
    /// (the decoder's hot path), then checks them in a fixed order. As with
    /// `JSONObject`'s subscript, the last of a repeated key wins.
    static func decodeNative(_ object: JSONObject) throws(EventDecodingError) -> ChangeEvent {
        var entity, id, ids, op, tenant, changed, attributes, before, after, version, occurredAt, eventID: JSONValue?
        for field in object.fields {
            let key = field.key
            // The length picks the one or two names worth comparing.
            switch key.utf8.count {
            case 2: if key == "id" { id = field.value } else if key == "op" { op = field.value }
            case 3: if key == "ids" { ids = field.value }
            case 5: if key == "after" { after = field.value }
            case 6:
                if key == "entity" { entity = field.value }
                else if key == "tenant" { tenant = field.value }
                else if key == "before" { before = field.value }
            case 7: if key == "changed" { changed = field.value } else if key == "version" { version = field.value }
            case 8: if key == "event_id" { eventID = field.value }
            case 10: if key == "attributes" { attributes = field.value }
            case 11: if key == "occurred_at" { occurredAt = field.value }
            default: break
            }
        }
        let entityText = try requiredString(entity, named: "entity")
        let opText = try requiredString(op, named: "op")
        guard let operation = operation(named: opText) else {
            throw EventDecodingError(.schemaViolation, "op '\(opText)' is not one of create, update, delete, read")
        }
        return ChangeEvent(
            entity: entityText,
            ids: try Self.ids(id: id, ids: ids),
            op: operation,
            tenant: try optionalString(tenant, named: "tenant"),
            changed: try changedFields(changed),
            attributes: try optionalObject(attributes, named: "attributes") ?? JSONObject(),
            before: try optionalObject(before, named: "before"),
            after: try optionalObject(after, named: "after"),
            version: try optionalScalar(version, named: "version"),
            occurredAt: try optionalString(occurredAt, named: "occurred_at"),
            eventID: try optionalString(eventID, named: "event_id")
        )
    }

    /// `Operation(rawValue:)` without its general string switch, which is a
    /// measurable share of decoding a small event.
    private static func operation(named name: String) -> ChangeEvent.Operation? {
        switch name.utf8.count {
        case 6: name == "update" ? .update : name == "create" ? .create : name == "delete" ? .delete : nil
        case 4: name == "read" ? .read : nil
        default: nil
        }
    }

    private static func ids(id: JSONValue?, ids: JSONValue?) throws(EventDecodingError) -> [String] {
        switch (id, ids) {
        case (let single?, nil):
            return [try idText(single, field: "id")]
        case (nil, .array(let values)?):
            guard !values.isEmpty else { throw EventDecodingError(.schemaViolation, "ids must not be empty") }
            guard values.count <= ChangeEvent.maximumIDs else {
                throw EventDecodingError(.schemaViolation, "ids has \(values.count) entries, over the limit of \(ChangeEvent.maximumIDs); split the change into several events")
            }
            var ids: [String] = []
            ids.reserveCapacity(values.count)
            for value in values {
                ids.append(try idText(value, field: "ids"))
            }
            return ids
        case (nil, _?):
            throw EventDecodingError(.schemaViolation, "ids must be an array")
        case (_?, _?):
            throw EventDecodingError(.schemaViolation, "an event has id or ids, not both")
        case (nil, nil):
            throw EventDecodingError(.schemaViolation, "id or ids is required")
        }
    }

    private static func idText(_ value: JSONValue, field: String) throws(EventDecodingError) -> String {
        switch value {
        case .string(let text) where !text.isEmpty: return text
        case .number(let text): return text
        default: throw EventDecodingError(.schemaViolation, "\(field) must be a non-empty string or a number")
        }
    }

    private static func changedFields(_ value: JSONValue?) throws(EventDecodingError) -> [String]? {
        guard let value, value != .null else { return nil }
        guard case .array(let elements) = value else {
            throw EventDecodingError(.schemaViolation, "changed must be an array of strings")
        }
        var names: [String] = []
        for element in elements {
            guard case .string(let name) = element else {
                throw EventDecodingError(.schemaViolation, "changed must be an array of strings")
            }
            names.append(name)
        }
        return names
    }

    private static func requiredString(_ value: JSONValue?, named key: String) throws(EventDecodingError) -> String {
        guard let text = try optionalString(value, named: key), !text.isEmpty else {
            throw EventDecodingError(.schemaViolation, "\(key) is required and must be a non-empty string")
        }
        return text
    }

    private static func optionalString(_ key: String, in object: JSONObject) throws(EventDecodingError) -> String? {
        try optionalString(object[key], named: key)
    }

    static func optionalString(_ value: JSONValue?, named key: String) throws(EventDecodingError) -> String? {
        switch value {
        case nil, .null?: return nil
        case .string(let text)?: return text
        default: throw EventDecodingError(.schemaViolation, "\(key) must be a string")
        }
    }

    static func optionalScalar(_ value: JSONValue?, named key: String) throws(EventDecodingError) -> String? {
        switch value {
        case nil, .null?: return nil
        case .string(let text)?, .number(let text)?: return text
        default: throw EventDecodingError(.schemaViolation, "\(key) must be a string or a number")
        }
    }

    private static func optionalObject(_ key: String, in object: JSONObject) throws(EventDecodingError) -> JSONObject? {
        try optionalObject(object[key], named: key)
    }

    private static func optionalObject(_ value: JSONValue?, named key: String) throws(EventDecodingError) -> JSONObject? {
        switch value {
        case nil, .null?: return nil
        case .object(let object)?: return object
        default: throw EventDecodingError(.schemaViolation, "\(key) must be an object")
        }
    }

    // MARK: Debezium

    static func decodeDebezium(_ object: JSONObject, fields: FieldMapping) throws(EventDecodingError) -> ChangeEvent {
        let payload = try optionalObject("payload", in: object) ?? object
        let opCode = try optionalString("op", in: payload)
        let op: ChangeEvent.Operation
        switch opCode {
        case "c": op = .create
        case "u": op = .update
        case "d": op = .delete
        case "r": op = .read
        case let other?: throw EventDecodingError(.schemaViolation, "Debezium op '\(other)' is not one of c, u, d, r")
        case nil: throw EventDecodingError(.schemaViolation, "Debezium payload.op is required")
        }
        guard let source = try optionalObject("source", in: payload) else {
            throw EventDecodingError(.schemaViolation, "Debezium payload.source is required")
        }
        let table = try optionalString("table", in: source)
        let collection = try optionalString("collection", in: source)
        guard let entity = table ?? collection, !entity.isEmpty else {
            throw EventDecodingError(.schemaViolation, "Debezium payload.source.table is required")
        }
        let before = try optionalObject("before", in: payload)
        let after = try optionalObject("after", in: payload)
        guard let row = after ?? before else {
            throw EventDecodingError(.schemaViolation, "Debezium payload has neither before nor after")
        }
        let idLocation = fields.locations["id"] ?? FieldMapping.Location(paths: [["id"]])
        let tenantLocation = fields.locations["tenant"] ?? FieldMapping.Location(paths: [["tenant"]])
        // The id and tenant come from one row: the new one, else (a delete) the old one.
        func column(_ name: String, at location: FieldMapping.Location) throws(EventDecodingError) -> String? {
            for candidate in [after, before] {
                guard let candidate, let value = try fields.value(of: name, at: location, in: candidate) else { continue }
                return value.scalarText
            }
            return nil
        }
        guard let id = try column("id", at: idLocation), !id.isEmpty else {
            throw EventDecodingError(.schemaViolation, "Debezium row has no \(idLocation) column")
        }
        let occurredAt = (payload["ts_ms"] ?? source["ts_ms"]).flatMap { value -> String? in
            guard case .number(let text) = value, let milliseconds = Int64(text) else { return nil }
            return RFC3339.format(millisecondsSinceEpoch: milliseconds)
        }
        return ChangeEvent(
            entity: entity, ids: [id], op: op,
            tenant: try column("tenant", at: tenantLocation),
            changed: nil, attributes: row, before: before, after: after,
            version: nil, occurredAt: occurredAt, eventID: nil
        )
    }

    // MARK: CloudEvents

    static func decodeCloudEvent(_ object: JSONObject, fields: FieldMapping) throws(EventDecodingError) -> ChangeEvent {
        for required in ["specversion", "id", "source", "type"] where object[required] == nil {
            throw EventDecodingError(.schemaViolation, "CloudEvent attribute \(required) is missing")
        }
        let data: JSONObject
        switch object["data"] {
        case .object(let value)?:
            data = value
        case .string(let text)?:
            guard case .object(let value)? = try? JSONParser.parse(bytes: Array(text.utf8)) else {
                throw EventDecodingError(.schemaViolation, "CloudEvent data string is not a JSON object")
            }
            data = value
        case nil where object["data_base64"] != nil:
            throw EventDecodingError(.schemaViolation, "CloudEvent data_base64 is not supported; send JSON data")
        default:
            throw EventDecodingError(.schemaViolation, "CloudEvent data must be a native change event object")
        }
        return try applyCloudEventDefaults(
            to: decodeNative(fields.canonicalized(data)),
            id: object["id"]?.scalarText, time: object["time"]?.stringValue, tenant: object["tenant"]?.stringValue)
    }

    /// The envelope's id, time and `tenant` extension fill what the data leaves out.
    static func applyCloudEventDefaults(
        to event: ChangeEvent, id: String?, time: String?, tenant: String?
    ) throws(EventDecodingError) -> ChangeEvent {
        var event = event
        event.eventID = event.eventID ?? id
        event.occurredAt = event.occurredAt ?? time
        event.tenant = event.tenant ?? tenant
        return event
    }
}
