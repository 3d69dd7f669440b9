/// A problem in a config or rules file, with the position an editor can jump to.
public struct Diagnostic: Hashable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    public var message: String

    public init(file: String, line: Int, column: Int, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
    }

    /// `file:line:column: message`, the form compilers use.
    public var description: String { "\(file):\(line):\(column): \(message)" }
}

/// A file was rejected; every problem found is listed, not only the first.
public struct ValidationError: Error, Hashable, Sendable, CustomStringConvertible {
    public var diagnostics: [Diagnostic]

    /// Keeps the diagnostics in file order, whatever order they were found in.
    public init(_ diagnostics: [Diagnostic]) {
        self.diagnostics = diagnostics.enumerated().sorted { left, right in
            (left.element.file, left.element.line, left.element.column, left.offset)
                < (right.element.file, right.element.line, right.element.column, right.offset)
        }.map(\.element)
    }

    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}
