/// A file that could not be read; distinct from a file that was read and is invalid.
public struct FileReadError: Error, CustomStringConvertible, Sendable {
    public var path: String
    /// Why, never the file's contents: the file may hold a secret.
    public var reason: String

    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }

    public var description: String { "cannot read \(path): \(reason)" }
}
