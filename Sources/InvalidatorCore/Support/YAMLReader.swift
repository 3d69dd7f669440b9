import Yams

/// Reads a YAML document node by node, collecting every problem as a `Diagnostic`
/// instead of stopping at the first one.
struct YAMLReader {
    let file: String
    private(set) var diagnostics: [Diagnostic] = []
    /// Expands `${VAR}` and `${VAR:-default}` in string scalars when set.
    let environment: [String: String]?

    init(file: String, environment: [String: String]? = nil) {
        self.file = file
        self.environment = environment
    }

    /// Parses `text`; a syntax error becomes a diagnostic and the result is nil.
    mutating func compose(_ text: String) -> Node? {
        do {
            return try Yams.compose(yaml: text)
        } catch let error as YamlError {
            switch error {
            case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _),
                 .composer(_, let problem, let mark, _):
                report(problem, line: mark.line, column: mark.column)
            case .duplicatedKeysInMapping(let duplicates, let context):
                report("duplicate key \(duplicates.joined(separator: ", "))", line: context.mark.line, column: context.mark.column)
            default:
                report("\(error)", line: 1, column: 1)
            }
        } catch {
            report("\(error)", line: 1, column: 1)
        }
        return nil
    }

    mutating func report(_ message: String, at node: Node?) {
        let mark = node?.mark
        report(message, line: mark?.line ?? 1, column: mark?.column ?? 1)
    }

    mutating func report(_ message: String, line: Int, column: Int) {
        diagnostics.append(Diagnostic(file: file, line: line, column: column, message: message))
    }

    /// The mapping's pairs keyed by name, reporting keys outside `allowed`.
    mutating func mapping(_ node: Node, context: String, allowed: Set<String>) -> [String: Node]? {
        guard case .mapping(let mapping) = node else {
            report("\(context) must be a mapping", at: node)
            return nil
        }
        var fields: [String: Node] = [:]
        for (key, value) in mapping {
            guard let name = key.string else {
                report("\(context) has a key that is not a string", at: key)
                continue
            }
            if allowed.contains(name) {
                fields[name] = value
            } else {
                report("unknown key '\(name)' in \(context); expected one of \(allowed.sorted().joined(separator: ", "))", at: key)
            }
        }
        return fields
    }

    mutating func sequence(_ node: Node, context: String) -> [Node]? {
        guard case .sequence(let sequence) = node else {
            report("\(context) must be a list", at: node)
            return nil
        }
        return Array(sequence)
    }

    mutating func string(_ node: Node, context: String) -> String? {
        guard case .scalar(let scalar) = node else {
            report("\(context) must be a string", at: node)
            return nil
        }
        return expand(scalar.string, at: node)
    }

    /// A single string or a list of strings.
    mutating func strings(_ node: Node, context: String) -> [String]? {
        if case .scalar = node {
            return string(node, context: context).map { [$0] }
        }
        guard let elements = sequence(node, context: context) else { return nil }
        var values: [String] = []
        for element in elements {
            if let value = string(element, context: "each entry of \(context)") {
                values.append(value)
            }
        }
        return values
    }

    /// A list of strings, each with the node it came from (for positions).
    mutating func stringNodes(_ node: Node, context: String) -> [(String, Node)] {
        guard let elements = sequence(node, context: context) else { return [] }
        var values: [(String, Node)] = []
        for element in elements {
            if let value = string(element, context: "each entry of \(context)") {
                values.append((value, element))
            }
        }
        return values
    }

    mutating func integer(_ node: Node, context: String, range: ClosedRange<Int>) -> Int? {
        guard let text = string(node, context: context) else { return nil }
        guard let value = Int(text), range.contains(value) else {
            report("\(context) must be an integer in \(range.lowerBound)...\(range.upperBound), got '\(text)'", at: node)
            return nil
        }
        return value
    }

    mutating func duration(_ node: Node, context: String) -> Duration? {
        guard let text = string(node, context: context) else { return nil }
        guard let duration = DurationParser.parse(text), duration > .zero else {
            report("\(context) must be a positive duration such as 500ms, 5s, 2m or 1h, got '\(text)'", at: node)
            return nil
        }
        return duration
    }

    private mutating func expand(_ text: String, at node: Node) -> String {
        guard let environment, text.contains("${") else { return text }
        var result = ""
        var rest = Substring(text)
        while let start = rest.range(of: "${") {
            result += rest[..<start.lowerBound]
            guard let end = rest[start.upperBound...].firstIndex(of: "}") else {
                report("unterminated ${ in '\(text)'", at: node)
                return text
            }
            let expression = rest[start.upperBound..<end]
            let (name, fallback) = Self.splitDefault(expression)
            if let value = environment[name] ?? fallback {
                result += value
            } else {
                report("environment variable \(name) is not set", at: node)
            }
            rest = rest[rest.index(after: end)...]
        }
        return result + rest
    }

    private static func splitDefault(_ expression: Substring) -> (String, String?) {
        guard let separator = expression.range(of: ":-") else { return (String(expression), nil) }
        return (String(expression[..<separator.lowerBound]), String(expression[separator.upperBound...]))
    }
}

/// Durations as operators write them: `250ms`, `5s`, `1.5s`, `2m`, `1h`.
public enum DurationParser {
    public static func parse(_ text: String) -> Duration? {
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        for (suffix, seconds) in units where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            guard !number.isEmpty, number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
                  let value = Double(number)
            else { continue }
            return .milliseconds(Int64((value * seconds * 1000).rounded()))
        }
        return nil
    }

    /// The shortest exact spelling: `500ms`, `5s`, `2m`, `1h`.
    public static func format(_ duration: Duration) -> String {
        let milliseconds = duration.milliseconds
        if milliseconds % 3_600_000 == 0, milliseconds > 0 { return "\(milliseconds / 3_600_000)h" }
        if milliseconds % 60_000 == 0, milliseconds > 0 { return "\(milliseconds / 60_000)m" }
        if milliseconds % 1000 == 0 { return "\(milliseconds / 1000)s" }
        return "\(milliseconds)ms"
    }
}

extension Duration {
    /// Whole milliseconds, rounded down.
    public var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
