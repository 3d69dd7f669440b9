/// Where a source's messages keep the values invalidator reads (`fields:` under a
/// source), for publishers whose messages name them differently. Empty: the
/// format's own names.
public struct FieldMapping: Hashable, Sendable {
    /// A field's location: one dotted path, or (`id` only) several whose values are
    /// joined with `compositeSeparator` into one composite id.
    public struct Location: Hashable, Sendable, CustomStringConvertible {
        public var paths: [[String]]

        public init(paths: [[String]]) {
            self.paths = paths
        }

        public var description: String {
            paths.map { $0.joined(separator: ".") }.joined(separator: ", ")
        }
    }

    /// Between the parts of a composite id, as in `acme:42`.
    public static let compositeSeparator = ":"
    /// Deepest dotted path a mapping may name.
    public static let maximumPathDepth = 16

    /// Canonical field name (`tenant`, `id`, `patterns`, ...) to where it is read from.
    public var locations: [String: Location]
    /// `op_values`: the publisher's op names to invalidator's (`created: create`).
    public var opValues: [String: ChangeEvent.Operation]

    public init(locations: [String: Location] = [:], opValues: [String: ChangeEvent.Operation] = [:]) {
        self.locations = locations
        self.opValues = opValues
    }

    public var isEmpty: Bool { locations.isEmpty && opValues.isEmpty }

    /// The canonical names a mapping may set for each format.
    public static func mappableFields(for format: EventFormat) -> [String] {
        switch format {
        case .native, .cloudevents: ["entity", "op", "id", "ids", "tenant", "version", "occurred_at", "event_id"]
        case .debezium: ["id", "tenant"]
        case .direct: ["keys", "patterns", "tags", "tenant", "event_id", "occurred_at"]
        case .auto: []
        }
    }

    /// `object` with each mapped field moved to its canonical name (a field already
    /// under a mapped canonical name is dropped: the mapping says where it is) and
    /// mapped op values renamed, so the format's decoder reads it as usual.
    func canonicalized(_ object: JSONObject) throws(EventDecodingError) -> JSONObject {
        guard !isEmpty else { return object }
        var fields = object.fields.filter { locations[$0.key] == nil }
        for (name, location) in locations.sorted(by: { $0.key < $1.key }) {
            if let value = try value(of: name, at: location, in: object) {
                fields.append(JSONObject.Field(key: name, value: value))
            }
        }
        if !opValues.isEmpty, let index = fields.lastIndex(where: { $0.key == "op" }),
           let name = fields[index].value.stringValue, let operation = opValues[name] {
            fields[index].value = .string(operation.rawValue)
        }
        return JSONObject(fields)
    }

    /// The value at `location`: as found for one path, the parts' text joined for several.
    func value(of name: String, at location: Location, in object: JSONObject) throws(EventDecodingError) -> JSONValue? {
        let root = JSONValue.object(object)
        if location.paths.count == 1 {
            return root.value(at: location.paths[0][...])
        }
        var parts: [String] = []
        for path in location.paths {
            guard let part = root.value(at: path[...]) else { return nil }
            guard let text = part.scalarText, !text.isEmpty else {
                throw EventDecodingError(.schemaViolation, "\(path.joined(separator: ".")), part of the composite \(name), must be a non-empty string or a number")
            }
            parts.append(text)
        }
        return .string(parts.joined(separator: Self.compositeSeparator))
    }
}
