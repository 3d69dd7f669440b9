import Yams

/// `INVALIDATOR__HTTP__LISTEN=0.0.0.0:9191` sets `http.listen`: each `__`-separated segment
/// after the prefix is a key. The tree is edited before it is read, so overridden values
/// are validated like any other, and diagnostics about them name the variable.
enum EnvironmentOverrides {
    private static let prefix = "INVALIDATOR__"

    /// Where a new key turns `_` into `.`: librdkafka property names have dots, which
    /// variable names cannot.
    private static let dottedKeyParents: Set<[String]> = [["sources", "kafka", "properties"]]

    /// Applies every override in name order, so the result does not depend on the
    /// environment's ordering.
    static func apply(_ environment: [String: String], to root: inout Node, reader: inout YAMLReader) {
        for (variable, text) in environment.sorted(by: { $0.key < $1.key }) where variable.hasPrefix(prefix) {
            let segments = variable.dropFirst(prefix.count).split(separator: "__", omittingEmptySubsequences: false)
            guard !segments.contains(where: \.isEmpty) else {
                reader.report("names an empty key; write keys as INVALIDATOR__SECTION__KEY", line: 1, column: 1, setBy: variable)
                continue
            }
            guard let value = parseValue(text, variable: variable, reader: &reader) else { continue }
            set(reader.label(value, setBy: variable), at: segments.map(String.init)[...], in: &root,
                path: [], variable: variable, reader: &reader)
        }
    }

    /// A value starting with `[` is a YAML flow list; anything else is taken as written,
    /// so passwords need no quoting.
    private static func parseValue(_ text: String, variable: String, reader: inout YAMLReader) -> Node? {
        guard text.hasPrefix("[") else { return Node(text) }
        guard let node = reader.compose(text, setBy: variable) else { return nil }
        guard case .sequence = node else {
            reader.report("a value starting with [ must be one list such as [a, b]", line: 1, column: 1, setBy: variable)
            return nil
        }
        return node
    }

    private static func set(
        _ value: Node, at segments: ArraySlice<String>, in node: inout Node, path: [String], variable: String,
        reader: inout YAMLReader
    ) {
        guard let segment = segments.first else {
            node = value
            return
        }
        guard case .mapping(var mapping) = node else {
            let place = path.isEmpty ? "the config" : path.joined(separator: ".")
            reader.report("cannot set a key inside \(place), which is not a mapping; set \(place) as a whole",
                          line: 1, column: 1, setBy: variable)
            return
        }
        let matches = mapping.indices.filter { index in
            mapping[index].key.string.map { normalized($0) == normalized(segment) } ?? false
        }
        guard matches.count <= 1 else {
            let names = matches.compactMap { mapping[$0].key.string }
            let place = (path + [segment.lowercased()]).joined(separator: ".")
            reader.report("\(place) matches several keys (\(names.joined(separator: ", ")))", line: 1, column: 1, setBy: variable)
            return
        }
        if let index = matches.first {
            let (key, existing) = mapping[index]
            var child = existing
            set(value, at: segments.dropFirst(), in: &child, path: path + [key.string ?? segment], variable: variable, reader: &reader)
            mapping[index] = (key, child)
        } else {
            let name = newKeyName(segment, parent: path.map(normalized))
            var child = reader.label(.mapping(Node.Mapping([])), setBy: variable)
            set(value, at: segments.dropFirst(), in: &child, path: path + [name], variable: variable, reader: &reader)
            mapping[reader.label(Node(name), setBy: variable)] = child
        }
        node = .mapping(mapping)
    }

    /// A key the config does not have yet: lowercased, with `_` as `.` in librdkafka
    /// properties and as `-` in webhook header names (`X_API_KEY` sets `x-api-key`).
    private static func newKeyName(_ segment: String, parent: [String]) -> String {
        if dottedKeyParents.contains(parent) { return segment.lowercased().replacing("_", with: ".") }
        if parent.count == 3, parent[0] == "webhooks", parent[2] == "headers" { return segment.lowercased().replacing("_", with: "-") }
        return segment.lowercased()
    }

    /// Keys compare case-insensitively, `_` standing for `_`, `-` or `.`.
    private static func normalized(_ key: String) -> String {
        String(key.lowercased().map { $0 == "-" || $0 == "." ? "_" : $0 })
    }
}
