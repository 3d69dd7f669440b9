/// A parsed JSON document.
///
/// Objects keep their fields in document order (no hashing on the hot path) and
/// numbers keep their source text, so `"version": 42` renders back as `42`
/// exactly, with no floating-point round trip.
public enum JSONValue: Hashable, Sendable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    public var objectValue: JSONObject? {
        if case .object(let object) = self { object } else { nil }
    }

    public var stringValue: String? {
        if case .string(let string) = self { string } else { nil }
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let array) = self { array } else { nil }
    }

    /// The text a scalar contributes to a cache key; nil for null, arrays and objects.
    public var scalarText: String? {
        switch self {
        case .string(let string): string
        case .number(let text): text
        case .bool(let flag): flag ? "true" : "false"
        case .null, .array, .object: nil
        }
    }

    /// The value at a dotted path such as `address.city`, nil if any step is missing.
    public func value(at path: ArraySlice<String>) -> JSONValue? {
        guard let first = path.first else { return self }
        guard case .object(let object) = self, let child = object[first] else { return nil }
        return child.value(at: path.dropFirst())
    }
}

/// A JSON object with fields in document order. Lookups are linear, which beats
/// hashing for the handful of fields a change event has.
public struct JSONObject: Hashable, Sendable {
    public struct Field: Hashable, Sendable {
        public var key: String
        public var value: JSONValue
        public init(key: String, value: JSONValue) {
            self.key = key
            self.value = value
        }
    }

    public var fields: [Field]

    public init(_ fields: [Field] = []) {
        self.fields = fields
    }

    /// The last field named `key`, as JavaScript does with duplicate keys.
    public subscript(key: String) -> JSONValue? {
        get {
            // Comparing lengths first skips String's slow unequal-comparison path for most fields.
            let length = key.utf8.count
            for field in fields.reversed() where field.key.utf8.count == length && field.key == key {
                return field.value
            }
            return nil
        }
        set {
            fields.removeAll { $0.key == key }
            if let newValue {
                fields.append(Field(key: key, value: newValue))
            }
        }
    }

    public var isEmpty: Bool { fields.isEmpty }
}

extension JSONObject: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self.init(elements.map { Field(key: $0.0, value: $0.1) })
    }
}

// MARK: - Serialization

extension JSONValue {
    /// Compact JSON text, fields in stored order.
    public func serialized() -> String {
        var output = ""
        write(to: &output, indent: nil, depth: 0)
        return output
    }

    /// JSON text indented by two spaces, fields in stored order.
    public func prettySerialized() -> String {
        var output = ""
        write(to: &output, indent: "  ", depth: 0)
        return output
    }

    private func write(to output: inout String, indent: String?, depth: Int) {
        switch self {
        case .null: output += "null"
        case .bool(let flag): output += flag ? "true" : "false"
        case .number(let text): output += text
        case .string(let string): JSONValue.writeQuoted(string, to: &output)
        case .array(let elements):
            writeContainer(elements, open: "[", close: "]", to: &output, indent: indent, depth: depth) { element, output in
                element.write(to: &output, indent: indent, depth: depth + 1)
            }
        case .object(let object):
            writeContainer(object.fields, open: "{", close: "}", to: &output, indent: indent, depth: depth) { field, output in
                JSONValue.writeQuoted(field.key, to: &output)
                output += indent == nil ? ":" : ": "
                field.value.write(to: &output, indent: indent, depth: depth + 1)
            }
        }
    }

    private func writeContainer<Element>(
        _ elements: [Element], open: String, close: String, to output: inout String,
        indent: String?, depth: Int, writeElement: (Element, inout String) -> Void
    ) {
        output += open
        guard !elements.isEmpty else {
            output += close
            return
        }
        for (index, element) in elements.enumerated() {
            if index > 0 { output += "," }
            if let indent {
                output += "\n" + String(repeating: indent, count: depth + 1)
            }
            writeElement(element, &output)
        }
        if let indent {
            output += "\n" + String(repeating: indent, count: depth)
        }
        output += close
    }

    static func writeQuoted(_ string: String, to output: inout String) {
        output += "\""
        // Most strings (keys, ids, names) need no escape: appended whole, not scalar by scalar.
        guard string.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) else {
            output += string
            output += "\""
            return
        }
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": output += "\\\""
            case "\\": output += "\\\\"
            case "\n": output += "\\n"
            case "\r": output += "\\r"
            case "\t": output += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                let hex = String(scalar.value, radix: 16)
                output += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: output.unicodeScalars.append(scalar)
            }
        }
        output += "\""
    }
}
