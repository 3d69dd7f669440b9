import Foundation
import InvalidatorCore
import InvalidatorRuntime
import Testing

/// Secrets mounted as files and environment overrides, read from a real folder.
@Suite final class ConfigurationFilesTests {
    let folder: URL

    init() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("invalidator-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try "rules:\n  - { name: user, match: { entity: user }, delete: [\"user:{id}\"] }\n"
            .write(to: folder.appendingPathComponent("rules.yaml"), atomically: true, encoding: .utf8)
    }

    deinit {
        try? FileManager.default.removeItem(at: folder)
    }

    /// Loads a config whose primary pool has the given `username` and `password` values.
    func load(username: String = "invalidator", password: String, environment: [String: String]) throws -> LoadedConfiguration {
        let config = """
            pools:
              primary: { nodes: ["127.0.0.1:6379"], username: "\(username)", password: "\(password)" }
            rules: rules.yaml
            sources: { redis_pubsub: { pool: primary, channels: [changes] } }
            """
        let path = folder.appendingPathComponent("invalidator.yaml")
        try config.write(to: path, atomically: true, encoding: .utf8)
        return try ConfigurationFiles.load(configPath: path.path, environment: environment)
    }

    /// A file in the test folder, as a Secret volume mounts it: contents and a trailing newline.
    func secretFile(_ name: String, contents: String) throws -> String {
        let path = folder.appendingPathComponent(name).path
        try (contents + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func readsAFileReferenceWithoutItsTrailingNewline() throws {
        let path = try secretFile("redis-password", contents: "s3cret")
        let loaded = try load(password: "${file:\(path)}", environment: [:])
        #expect(loaded.configuration.pool(named: "primary")?.password == "s3cret")
    }

    @Test func readsAnUnsetVariableFromItsFileVariable() throws {
        let path = try secretFile("redis-password", contents: "s3cret")
        let loaded = try load(password: "${REDIS_PASSWORD}", environment: ["REDIS_PASSWORD_FILE": path])
        #expect(loaded.configuration.pool(named: "primary")?.password == "s3cret")
    }

    @Test func appliesEnvironmentOverrides() throws {
        let loaded = try load(password: "unused", environment: [
            "INVALIDATOR__HTTP__LISTEN": "127.0.0.1:9191", "INVALIDATOR__POOLS__PRIMARY__PASSWORD": "s3cret",
        ])
        #expect(loaded.configuration.http.listen.description == "127.0.0.1:9191")
        #expect(loaded.configuration.pool(named: "primary")?.password == "s3cret")
    }

    @Test func aMissingSecretFileIsReportedByPathOnly() throws {
        let secret = "s3cret-\(UUID().uuidString.prefix(8))"
        let present = try secretFile("redis-username", contents: secret)
        let missing = folder.appendingPathComponent("redis-password").path
        do {
            _ = try load(username: "${file:\(present)}", password: "${REDIS_PASSWORD}", environment: ["REDIS_PASSWORD_FILE": missing])
            Issue.record("expected a diagnostic")
        } catch let error as ValidationError {
            #expect(error.diagnostics.map(\.message) == [
                "cannot read secret file \(missing) (named by REDIS_PASSWORD_FILE): no such file",
            ])
            #expect(!error.description.contains(secret))
        }
    }
}
