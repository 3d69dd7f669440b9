import Yams

/// Reads the file a `${file:PATH}` or a `VAR_FILE` variable names. The caller does the
/// I/O, so the loaders stay pure.
public typealias SecretFileReader = (_ path: String) throws(FileReadError) -> String

/// What `${...}` in string scalars expands from.
struct Substitutions {
    var environment: [String: String]
    var readSecretFile: SecretFileReader
}

/// Reads a YAML document node by node, collecting every problem as a `Diagnostic`
/// instead of stopping at the first one.
struct YAMLReader {
    /// The `file` of diagnostics about values set by environment variables.
    private static let environmentFile = "environment"

    let file: String
    private(set) var diagnostics: [Diagnostic] = []
    /// Expands `${VAR}`, `${VAR:-default}` and `${file:PATH}` in string scalars when set.
    let substitutions: Substitutions?
    /// Contents of secret files read so far, kept out of every diagnostic.
    private var secrets: [String] = []
    /// Anchors naming the variable that set a node (see `label`). Nodes hold anchors
    /// weakly, so the reader keeps them alive.
    private var variableAnchors: [Anchor] = []

    init(file: String, substitutions: Substitutions? = nil) {
        self.file = file
        self.substitutions = substitutions
    }

    /// Parses `text`; a syntax error becomes a diagnostic and the result is nil.
    /// - Parameter variable: the environment variable `text` came from, if any.
    mutating func compose(_ text: String, setBy variable: String? = nil) -> Node? {
        do {
            return try Yams.compose(yaml: text)
        } catch let error as YamlError {
            switch error {
            case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _),
                 .composer(_, let problem, let mark, _):
                report(problem, line: mark.line, column: mark.column, setBy: variable)
            case .duplicatedKeysInMapping(let duplicates, let context):
                report("duplicate key \(duplicates.joined(separator: ", "))", line: context.mark.line, column: context.mark.column,
                       setBy: variable)
            default:
                report("\(error)", line: 1, column: 1, setBy: variable)
            }
        } catch {
            report("\(error)", line: 1, column: 1, setBy: variable)
        }
        return nil
    }

    /// `node` and everything inside it, marked as set by `variable` so that diagnostics
    /// about them name the variable instead of a place in the file.
    mutating func label(_ node: Node, setBy variable: String) -> Node {
        let anchor = Anchor(rawValue: variable)
        variableAnchors.append(anchor)
        return Self.attach(anchor, to: node)
    }

    private static func attach(_ anchor: Anchor, to node: Node) -> Node {
        switch node {
        case .scalar(var scalar):
            scalar.anchor = anchor
            return .scalar(scalar)
        case .sequence(var sequence):
            sequence.anchor = anchor
            for index in sequence.indices {
                sequence[index] = attach(anchor, to: sequence[index])
            }
            return .sequence(sequence)
        case .mapping(var mapping):
            mapping.anchor = anchor
            for index in mapping.indices {
                let (key, value) = mapping[index]
                mapping[index] = (attach(anchor, to: key), attach(anchor, to: value))
            }
            return .mapping(mapping)
        case .alias:
            return node
        }
    }

    private func variable(thatSet node: Node?) -> String? {
        guard let anchor = node?.anchor, variableAnchors.contains(where: { $0 === anchor }) else { return nil }
        return anchor.rawValue
    }

    mutating func report(_ message: String, at node: Node?) {
        let mark = node?.mark
        report(message, line: mark?.line ?? 1, column: mark?.column ?? 1, setBy: variable(thatSet: node))
    }

    mutating func report(_ message: String, line: Int, column: Int, setBy variable: String? = nil) {
        // A node URL's password never reaches a message, whichever check quotes it.
        var message = message.redactingURLPasswords
        for secret in secrets where !secret.isEmpty {
            message = message.replacing(secret, with: "<secret>")
        }
        if let variable {
            diagnostics.append(Diagnostic(file: Self.environmentFile, line: line, column: column, message: "\(variable): \(message)"))
        } else {
            diagnostics.append(Diagnostic(file: file, line: line, column: column, message: message))
        }
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

    /// A string that may hold a secret, and how to show it: each `${...}` substitution
    /// as `***`, or all of it when an environment override set it.
    mutating func secretString(_ node: Node, context: String) -> (value: String, redacted: String)? {
        guard case .scalar(let scalar) = node, let value = string(node, context: context) else { return nil }
        if variable(thatSet: node) != nil { return (value, "***") }
        guard substitutions != nil, scalar.string.contains("${") else { return (value, value) }
        var redacted = ""
        var rest = Substring(scalar.string)
        while let start = rest.range(of: "${"), let end = rest[start.upperBound...].firstIndex(of: "}") {
            redacted += rest[..<start.lowerBound] + "***"
            rest = rest[rest.index(after: end)...]
        }
        return (value, redacted + rest)
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

    mutating func boolean(_ node: Node, context: String) -> Bool? {
        guard let text = string(node, context: context) else { return nil }
        switch text {
        case "true": return true
        case "false": return false
        default:
            report("\(context) must be true or false, got '\(text)'", at: node)
            return nil
        }
    }

    mutating func integer(_ node: Node, context: String, range: ClosedRange<Int>) -> Int? {
        guard let text = string(node, context: context) else { return nil }
        guard let value = Int(text), range.contains(value) else {
            report("\(context) must be an integer in \(range.lowerBound)...\(range.upperBound), got '\(text)'", at: node)
            return nil
        }
        return value
    }

    /// A size in bytes within `range`: a count of bytes, or one with a KiB, MiB or GiB suffix
    /// (powers of 1024; decimal KB/MB/GB are refused rather than guessed at).
    mutating func byteSize(_ node: Node, context: String, range: ClosedRange<Int>) -> Int? {
        guard let text = string(node, context: context) else { return nil }
        let units: [(suffix: String, bytes: Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)]
        let unit = units.first { text.hasSuffix($0.suffix) } ?? ("", 1)
        let digits = text.dropLast(unit.suffix.count)
        guard digits.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }), let count = Int(digits) else {
            report("\(context) must be a size such as 64MiB, 512KiB or a number of bytes, got '\(text)'", at: node)
            return nil
        }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: unit.bytes)
        guard !overflow, range.contains(bytes) else {
            report("\(context) must be from \(Self.formatBytes(range.lowerBound)) to \(Self.formatBytes(range.upperBound)), got '\(text)'", at: node)
            return nil
        }
        return bytes
    }

    /// `bytes` in the largest unit that divides it, as `byteSize` reads it back.
    static func formatBytes(_ bytes: Int) -> String {
        for (suffix, unit) in [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] where bytes >= unit && bytes % unit == 0 {
            return "\(bytes / unit)\(suffix)"
        }
        return "\(bytes)"
    }

    /// A positive duration from `minimum` to `maximum`: every duration setting has a
    /// ceiling past which it can only be a mistake (and arithmetic on it could overflow),
    /// and some a floor below which the worker would busy itself for nothing.
    mutating func duration(_ node: Node, context: String, minimum: Duration? = nil, maximum: Duration) -> Duration? {
        guard let text = string(node, context: context) else { return nil }
        guard let duration = DurationParser.parse(text), duration > .zero else {
            report("\(context) must be a positive duration such as 500ms, 5s, 2m or 1h, got '\(text)'", at: node)
            return nil
        }
        guard duration <= maximum else {
            report("\(context) must be at most \(DurationParser.format(maximum)), got '\(text)'", at: node)
            return nil
        }
        if let minimum, duration < minimum {
            report("\(context) must be at least \(DurationParser.format(minimum)), got '\(text)'", at: node)
            return nil
        }
        return duration
    }

    private mutating func expand(_ text: String, at node: Node) -> String {
        guard let substitutions, text.contains("${") else { return text }
        var result = ""
        var rest = Substring(text)
        while let start = rest.range(of: "${") {
            result += rest[..<start.lowerBound]
            guard let end = rest[start.upperBound...].firstIndex(of: "}") else {
                report("unterminated ${ in '\(text)'", at: node)
                return text
            }
            if let value = resolve(rest[start.upperBound..<end], from: substitutions, at: node) {
                result += value
            }
            rest = rest[rest.index(after: end)...]
        }
        return result + rest
    }

    /// `file:PATH`, `VAR` or `VAR:-default`. An unset `VAR` is read from the file that
    /// `VAR_FILE` names, as Docker images do for secrets, before the default applies.
    private mutating func resolve(_ expression: Substring, from substitutions: Substitutions, at node: Node) -> String? {
        if expression.hasPrefix(Self.filePrefix) {
            return readSecret(String(expression.dropFirst(Self.filePrefix.count)), with: substitutions.readSecretFile, at: node)
        }
        let (name, fallback) = Self.splitDefault(expression)
        if let value = substitutions.environment[name] {
            return value
        }
        let fileVariable = name + "_FILE"
        if let path = substitutions.environment[fileVariable] {
            return readSecret(path, namedBy: fileVariable, with: substitutions.readSecretFile, at: node)
        }
        if let fallback {
            return fallback
        }
        report("environment variable \(name) is not set", at: node)
        return nil
    }

    private static let filePrefix = "file:"

    /// The file's contents without one trailing newline, which editors and
    /// `echo` add and Kubernetes Secret volumes keep.
    private mutating func readSecret(
        _ path: String, namedBy variable: String? = nil, with readSecretFile: SecretFileReader, at node: Node
    ) -> String? {
        do {
            var contents = try readSecretFile(path)
            if contents.last == "\n" || contents.last == "\r\n" {
                contents.removeLast()
            }
            secrets.append(contents)
            return contents
        } catch {
            let source = variable.map { " (named by \($0))" } ?? ""
            report("cannot read secret file \(path)\(source): \(error.reason)", at: node)
            return nil
        }
    }

    private static func splitDefault(_ expression: Substring) -> (String, String?) {
        guard let separator = expression.range(of: ":-") else { return (String(expression), nil) }
        return (String(expression[..<separator.lowerBound]), String(expression[separator.upperBound...]))
    }
}

/// Durations as operators write them: `250ms`, `5s`, `1.5s`, `2m`, `1h`.
public enum DurationParser {
    /// The longest duration any setting accepts: far beyond every sensible value, far
    /// within what arithmetic on durations can hold.
    public static let longest: Duration = .seconds(100 * 365 * 86_400)

    /// nil for anything that is not a number and a unit, or is longer than `longest`.
    public static func parse(_ text: String) -> Duration? {
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        for (suffix, seconds) in units where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            guard !number.isEmpty, number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
                  let value = Double(number)
            else { continue }
            guard let milliseconds = Int64(exactly: (value * seconds * 1000).rounded()),
                  milliseconds <= longest.milliseconds
            else { return nil }
            return .milliseconds(milliseconds)
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

/// The one place durations are turned into whole units.
extension Duration {
    /// Whole milliseconds, rounded down.
    package var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    /// Whole nanoseconds, saturated at `Int64.max` (292 years) and at 0 below zero seconds.
    package var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        guard !overflow, scaled <= Int64.max - 1_000_000_000 else { return seconds < 0 ? 0 : .max }
        return scaled + attoseconds / 1_000_000_000
    }
}
