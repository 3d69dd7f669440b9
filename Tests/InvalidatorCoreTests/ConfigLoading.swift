import InvalidatorCore

/// Loads `yaml` as `invalidator.yaml`.
/// - Parameter secretFiles: contents by path, standing in for mounted secret files.
func load(
    _ yaml: String, environment: [String: String] = [:], secretFiles: [String: String] = [:]
) throws(ValidationError) -> Configuration {
    try ConfigurationLoader.load(yaml: yaml, file: "invalidator.yaml", environment: environment) { path throws(FileReadError) in
        guard let contents = secretFiles[path] else { throw FileReadError(path: path, reason: "no such file") }
        return contents
    }
}

/// The diagnostics `load` throws, as `file:line:column: message` lines; empty when it loads.
func diagnostics(_ yaml: String, environment: [String: String] = [:], secretFiles: [String: String] = [:]) -> [String] {
    do {
        _ = try load(yaml, environment: environment, secretFiles: secretFiles)
        return []
    } catch {
        return error.diagnostics.map(\.description)
    }
}
