/// A key template such as `user:{tenant}:{id}`, compiled once when rules load.
///
/// `{name}` is a required placeholder, `{name?}` an optional one, and `{{` / `}}`
/// are literal braces (so `cart:{{{id}}}` renders the Redis Cluster hash tag
/// `cart:{42}`).
public struct Template: Hashable, Sendable, CustomStringConvertible {
    public enum Segment: Hashable, Sendable {
        case literal(String)
        case placeholder(Placeholder)
    }

    public let source: String
    public let segments: [Segment]

    public var description: String { source }

    /// True when the template uses `{id}`, so a bulk event renders it once per id.
    public let usesID: Bool

    /// A compile error with the character offset in `source` where it was found.
    public struct CompileError: Error, Hashable, Sendable {
        public var offset: Int
        public var message: String
    }

    public init(compiling source: String) throws(CompileError) {
        self.source = source
        var segments: [Segment] = []
        var literal = ""
        var index = source.startIndex
        func offset(_ position: String.Index) -> Int { source.distance(from: source.startIndex, to: position) }
        while index < source.endIndex {
            let character = source[index]
            let next = source.index(after: index)
            if character == "{", next < source.endIndex, source[next] == "{" {
                literal.append("{")
                index = source.index(after: next)
            } else if character == "}", next < source.endIndex, source[next] == "}" {
                literal.append("}")
                index = source.index(after: next)
            } else if character == "{" {
                guard let close = source[next...].firstIndex(of: "}") else {
                    throw CompileError(offset: offset(index), message: "unclosed '{' in template '\(source)'; write '{{' for a literal brace")
                }
                let placeholder = try Placeholder.parse(String(source[next..<close]))
                    .mapError {
                        CompileError(offset: offset(index), message: "\($0) in template '\(source)'; known: \(Placeholder.knownNames)")
                    }
                    .get()
                if !literal.isEmpty {
                    segments.append(.literal(literal))
                    literal = ""
                }
                segments.append(.placeholder(placeholder))
                index = source.index(after: close)
            } else if character == "}" {
                throw CompileError(offset: offset(index), message: "unmatched '}' in template '\(source)'; write '}}' for a literal brace")
            } else if character.unicodeScalars.contains(where: Self.isControl) {
                throw CompileError(offset: offset(index), message: "control character in template '\(source)'")
            } else {
                literal.append(character)
                index = next
            }
        }
        if !literal.isEmpty {
            segments.append(.literal(literal))
        }
        guard !segments.isEmpty else {
            throw CompileError(offset: 0, message: "empty template")
        }
        self.segments = segments
        self.usesID = segments.contains { if case .placeholder(let placeholder) = $0 { placeholder.field == .id } else { false } }
    }

    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || scalar.value == 0x7F
    }

    /// Control characters are ASCII, so a byte scan finds them without decoding.
    package static func containsControlCharacter(_ text: String) -> Bool {
        text.utf8.contains { $0 < 0x20 || $0 == 0x7F }
    }

    /// For patterns: false when a glob wildcard comes before any literal text, as
    /// in `*:{id}`, which could match keys of any owner.
    package var hasLiteralPrefixBeforeWildcard: Bool {
        var sawLiteral = false
        for segment in segments {
            switch segment {
            case .placeholder:
                continue
            case .literal(let text):
                var escaped = false
                for character in text {
                    if escaped {
                        escaped = false
                        sawLiteral = true
                    } else if character == "\\" {
                        escaped = true
                    } else if Glob.wildcards.contains(character) {
                        return sawLiteral
                    } else {
                        sawLiteral = true
                    }
                }
            }
        }
        return true
    }
}

/// A value from the event named in a template.
public struct Placeholder: Hashable, Sendable, CustomStringConvertible {
    public enum Field: Hashable, Sendable {
        case id, entity, op, tenant, version
        case attributes([String])
        case before([String])
        case after([String])
    }

    public let field: Field
    public let isOptional: Bool
    /// The name as written, without braces or `?`.
    public let name: String

    public var description: String { "{\(name)\(isOptional ? "?" : "")}" }

    public static let knownNames = "{id} {entity} {op} {tenant} {version} {attributes.x} {before.x} {after.x}"

    static func parse(_ text: String) -> Result<Placeholder, PlaceholderError> {
        let isOptional = text.hasSuffix("?")
        let name = isOptional ? String(text.dropLast()) : text
        let parts = name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        let field: Field
        switch (parts.first ?? "", parts.count) {
        case ("id", 1): field = .id
        case ("entity", 1): field = .entity
        case ("op", 1): field = .op
        case ("tenant", 1): field = .tenant
        case ("version", 1): field = .version
        case ("attributes", 2...) where !parts.contains(""): field = .attributes(Array(parts.dropFirst()))
        case ("before", 2...) where !parts.contains(""): field = .before(Array(parts.dropFirst()))
        case ("after", 2...) where !parts.contains(""): field = .after(Array(parts.dropFirst()))
        default:
            return .failure(PlaceholderError(name: text))
        }
        return .success(Placeholder(field: field, isOptional: isOptional, name: name))
    }

    private init(field: Field, isOptional: Bool, name: String) {
        self.field = field
        self.isOptional = isOptional
        self.name = name
    }

    /// The event's value for this placeholder as key text; nil when absent, null,
    /// empty, or not a scalar.
    func value(in event: ChangeEvent, id: String) -> String? {
        let text: String?
        switch field {
        case .id: text = id
        case .entity: text = event.entity
        case .op: text = event.op.rawValue
        case .tenant: text = event.tenant
        case .version: text = event.version
        case .attributes(let path): text = JSONValue.object(event.attributes).value(at: path[...])?.scalarText
        case .before(let path): text = event.before.flatMap { JSONValue.object($0).value(at: path[...])?.scalarText }
        case .after(let path): text = event.after.flatMap { JSONValue.object($0).value(at: path[...])?.scalarText }
        }
        guard let text, !text.isEmpty else { return nil }
        return text
    }
}

struct PlaceholderError: Error, CustomStringConvertible {
    var name: String
    var description: String { "unknown placeholder {\(name)}" }
}

/// Redis glob syntax, as SCAN MATCH reads it.
package enum Glob {
    static let wildcards: Set<Character> = ["*", "?", "["]

    /// Every metacharacter is ASCII, so escaping works on bytes and leaves UTF-8 sequences intact.
    private static func isSpecial(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "*"), UInt8(ascii: "?"), UInt8(ascii: "["), UInt8(ascii: "]"), UInt8(ascii: "\\"): true
        default: false
        }
    }

    /// `value` with every glob metacharacter backslash-escaped, so it matches only itself.
    package static func escape(_ value: String) -> String {
        guard value.utf8.contains(where: isSpecial) else { return value }
        return String(decoding: escape(bytes: value.utf8), as: UTF8.self)
    }

    /// `escape(_:)` for bytes, which need not be UTF-8 (a key's, a prefix cut anywhere).
    package static func escape(bytes value: some Collection<UInt8>) -> [UInt8] {
        var escaped: [UInt8] = []
        escaped.reserveCapacity(value.count + 4)
        for byte in value {
            if isSpecial(byte) { escaped.append(UInt8(ascii: "\\")) }
            escaped.append(byte)
        }
        return escaped
    }
}
