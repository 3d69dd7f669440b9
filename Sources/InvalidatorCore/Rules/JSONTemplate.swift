import Yams

/// A JSON value whose strings may hold placeholders, such as a `notify` message
/// `{pattern: "user:{tenant}:{id}", tenantId: "{tenant}"}` or a `webhook` body.
///
/// Placeholders render as text inside JSON strings, and the result is serialized
/// as JSON, so a quote, backslash or brace in an event's value is escaped, never
/// spliced into the document.
public struct JSONTemplate: Hashable, Sendable {
    public indirect enum Element: Hashable, Sendable {
        /// null, a boolean, a number, or a string without placeholders.
        case literal(JSONValue)
        case string(Template)
        case array([Element])
        case object([Field])
    }

    public struct Field: Hashable, Sendable {
        public var key: String
        public var value: Element
        public init(key: String, value: Element) {
            self.key = key
            self.value = value
        }
    }

    public let root: Element
    /// True when `{id}` appears other than as a string element of an array: such a
    /// template renders once per id of a bulk event. A string element of an array
    /// that uses `{id}` renders once per id inside its array instead.
    public let rendersPerID: Bool

    public init(_ root: Element) {
        self.root = root
        self.rendersPerID = Self.usesIDOutsideArrayStrings(root)
    }

    private static func usesIDOutsideArrayStrings(_ element: Element) -> Bool {
        switch element {
        case .literal: false
        case .string(let template): template.usesID
        case .array(let elements):
            elements.contains { element in
                if case .string = element { false } else { usesIDOutsideArrayStrings(element) }
            }
        case .object(let fields): fields.contains { usesIDOutsideArrayStrings($0.value) }
        }
    }
}

/// Reading YAML values as JSON: plain `null`, `~`, `true`, `false` and JSON numbers
/// are those JSON values; every other scalar, and every quoted one, is a string.
extension YAMLReader {
    /// Nesting deeper than this is refused: no message needs it, and walking it recurses.
    static let deepestJSONNesting = 32

    /// The node as a template; placeholders compile as in keys, and a bad one is
    /// reported at its character.
    mutating func jsonTemplate(_ node: Node, context: String, depth: Int = 0) -> JSONTemplate.Element? {
        switch jsonShape(node, context: context, depth: depth) {
        case nil:
            return nil
        case .scalar(let literal)?:
            if let literal { return .literal(literal) }
            guard let text = string(node, context: context) else { return nil }
            // Only a brace can start a placeholder; an empty string is no key but is a fine JSON value.
            guard text.contains(where: { $0 == "{" || $0 == "}" }) else { return .literal(.string(text)) }
            return RulesLoader.compileTemplate(text, at: node, context: context, reader: &self).map(JSONTemplate.Element.string)
        case .sequence(let elements)?:
            let compiled = elements.map { jsonTemplate($0, context: context, depth: depth + 1) }
            guard compiled.allSatisfy({ $0 != nil }) else { return nil }
            return .array(compiled.compactMap { $0 })
        case .mapping(let pairs)?:
            var fields: [JSONTemplate.Field] = []
            var failed = false
            for (key, value) in pairs {
                if let compiled = jsonTemplate(value, context: "\(context).\(key)", depth: depth + 1) {
                    fields.append(JSONTemplate.Field(key: key, value: compiled))
                } else {
                    failed = true
                }
            }
            return failed ? nil : .object(fields)
        }
    }

    /// The node as a literal JSON value, and the same value with every string that
    /// came from a `${...}` substitution (or an environment override) shown as `***`.
    mutating func secretJSONValue(_ node: Node, context: String, depth: Int = 0) -> (value: JSONValue, redacted: JSONValue)? {
        switch jsonShape(node, context: context, depth: depth) {
        case nil:
            return nil
        case .scalar(let literal)?:
            if let literal { return (literal, literal) }
            return secretString(node, context: context).map { (.string($0.value), .string($0.redacted == $0.value ? $0.value : "***")) }
        case .sequence(let elements)?:
            let values = elements.compactMap { secretJSONValue($0, context: context, depth: depth + 1) }
            guard values.count == elements.count else { return nil }
            return (.array(values.map(\.value)), .array(values.map(\.redacted)))
        case .mapping(let pairs)?:
            var value = JSONObject()
            var redacted = JSONObject()
            for (key, node) in pairs {
                guard let field = secretJSONValue(node, context: "\(context).\(key)", depth: depth + 1) else { return nil }
                value.fields.append(JSONObject.Field(key: key, value: field.value))
                redacted.fields.append(JSONObject.Field(key: key, value: field.redacted))
            }
            return (.object(value), .object(redacted))
        }
    }

    private enum JSONShape {
        /// The JSON literal a plain scalar spells, or nil for a string.
        case scalar(JSONValue?)
        case sequence([Node])
        case mapping([(String, Node)])
    }

    private mutating func jsonShape(_ node: Node, context: String, depth: Int) -> JSONShape? {
        guard depth < Self.deepestJSONNesting else {
            report("\(context) is nested deeper than \(Self.deepestJSONNesting) levels", at: node)
            return nil
        }
        switch node {
        case .scalar(let scalar):
            guard scalar.style == .plain else { return .scalar(nil) }
            switch scalar.string {
            case "null", "~": return .scalar(.null)
            case "true": return .scalar(.bool(true))
            case "false": return .scalar(.bool(false))
            case let text:
                guard case .number? = try? JSONParser.parse(bytes: Array(text.utf8)) else { return .scalar(nil) }
                return .scalar(.number(text))
            }
        case .sequence(let sequence):
            return .sequence(Array(sequence))
        case .mapping(let mapping):
            var pairs: [(String, Node)] = []
            for (key, value) in mapping {
                guard case .scalar = key, let name = key.string else {
                    report("\(context) has a key that is not a string", at: key)
                    return nil
                }
                pairs.append((name, value))
            }
            return .mapping(pairs)
        default:
            report("\(context) must be a JSON value (aliases are not supported)", at: node)
            return nil
        }
    }
}
