import Foundation
import TestSupport
import Testing

/// A node URL's password, given to the real executable: whatever `validate` and
/// `explain` print about the config, valid or not, never holds it.
@Suite(.timeLimit(.minutes(1))) struct NodeURLSecretFaultTests {
    static let password = "Url-Secret-77"

    func config(nodes: String, pool: String = "") -> String {
        """
        sources:
          redis_pubsub: { pool: primary, channels: [entity-changes] }
        pools:
          primary: { mode: replicated, nodes: \(nodes)\(pool) }
        rules:
          - { name: user, match: { entity: user }, delete: ["user:{id}"] }
        """
    }

    @Test func validateNeverPrintsTheURLPassword() throws {
        let scenario = try Scenario()
        let url = "rediss://app:\(Self.password)@cache-0:6380/2"
        let invalid = [
            config(nodes: "[\"\(url)\", \"redis://app:\(Self.password)@cache-1:99999\"]"),
            config(nodes: "[\"\(url)\", \"\(url)\"]"),
            config(nodes: "[\"\(url)\"]", pool: ", password: other"),
            config(nodes: "[\"${NODE_URL}?timeout=1\"]"),
        ]
        var outputs: [String] = []
        for (index, text) in invalid.enumerated() {
            let path = try scenario.write("invalid-\(index).yaml", text)
            let (exit, output) = try runInvalidator(["validate", "--config", path], environment: ["NODE_URL": url])
            #expect(exit == ChildProcess.Exit(status: 1, bySignal: false), "\(output)")
            #expect(output.contains("app:***@"), "\(output)")
            outputs.append(output)
        }
        let valid = try scenario.write("valid.yaml", config(nodes: "[\"${NODE_URL}\"]", pool: ", tls: { verify: false }"))
        let (exit, output) = try runInvalidator(["validate", "--config", valid], environment: ["NODE_URL": url])
        #expect(exit == .success, "\(output)")
        #expect(output.contains("warning: pool 'primary' has tls.verify: false"), "\(output)")
        let explained = try runInvalidator(
            ["explain", "--config", valid, "--event", #"{"entity":"user","id":"1","op":"update"}"#, "--format", "json"],
            environment: ["NODE_URL": url])
        #expect(explained.exit == .success, "\(explained.output)")
        outputs += [output, explained.output]
        for output in outputs {
            #expect(!output.contains(Self.password), "\(output)")
        }
        report("URL password in validate/explain output", "absent from \(outputs.count) outputs (\(invalid.count) refused configs, a valid one with tls.verify: false, explain)")
    }
}
