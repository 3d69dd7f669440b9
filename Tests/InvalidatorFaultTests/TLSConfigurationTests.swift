import Foundation
import TestSupport
import Testing

/// The config's `rediss://` URLs and `tls:` block reach the connection: the real
/// executable (`apply`, and `run` with Streams and pub/sub sources) deletes over TLS
/// as an ACL user named in the URL, refuses a server
/// its CA does not vouch for with the reason, and never prints the password.
@Suite(.timeLimit(.minutes(2))) struct TLSConfigurationTests {
    @Test func aRedissURLWithAnACLUserThroughTheRealExecutable() async throws {
        let certificates = try await TestCertificates.generate()
        let server = try await RedisServer.start(tls: certificates)
        try server.call("ACL", "SETUSER", "app", "on", ">s3cret-pw", "~*", "&*", "+@all")
        try server.call("SET", "user:1", "v")
        let scenario = try Scenario()
        try scenario.write("rules.yaml", RedisNodeFaultTests.rules)
        func config(caFile: String) -> String {
            """
            sources:
              redis_stream: { pool: cache, streams: ["entity-changes"], group: invalidator }
              redis_pubsub: { pool: cache, channels: ["entity-changes"] }
            pools:
              cache:
                nodes: ["rediss://app:s3cret-pw@\(server.tlsEndpoint)/0"]
                tls: { ca_file: "\(caFile)" }
            rules: rules.yaml
            dead_letters: { pool: cache, stream: "dead-letters" }
            """
        }
        let event = #"{"entity":"user","id":"1","op":"update"}"#

        let good = try scenario.write("good.yaml", config(caFile: certificates.caFile))
        let (exit, output) = try runInvalidator(["apply", "--config", good, "--event", event])
        #expect(exit == .success, "\(output)")
        #expect(try server.call("EXISTS", "user:1") == "0")
        #expect(!output.contains("s3cret-pw"))

        // The worker's Streams and pub/sub sources over the same TLS pool.
        let worker = try InvalidatorProcess(run: good)
        #expect(try await worker.waitUntilReady())
        try server.call("SET", "user:2", "v")
        try server.call("SET", "user:3", "v")
        try server.call("XADD", "entity-changes", "*", "event", #"{"entity":"user","id":"2","op":"update"}"#)
        #expect(try await eventually { try server.call("EXISTS", "user:2") == "0" }, "\(worker.log.suffix(1500))")
        #expect(try await eventually {
            try server.call("PUBLISH", "entity-changes", #"{"entity":"user","id":"3","op":"update"}"#)
            return try server.call("EXISTS", "user:3") == "0"
        })
        #expect(worker.terminate() == .success)
        #expect(!worker.log.contains("s3cret-pw"))

        try server.call("SET", "user:1", "v")
        let wrongCA = try scenario.write("wrong-ca.yaml", config(caFile: certificates.otherCAFile))
        let (refusedExit, refused) = try runInvalidator(["apply", "--config", wrongCA, "--event", event])
        #expect(refusedExit == ChildProcess.Exit(status: 1, bySignal: false), "\(refused)")
        #expect(refused.contains("certificate verify failed"), "\(refused)")
        #expect(!refused.contains("s3cret-pw"))
        #expect(try server.call("EXISTS", "user:1") == "1")
        report("rediss:// URL with an ACL user", "apply, Streams and pub/sub deleted over TLS; a CA that did not sign the server refused with 'certificate verify failed'")
    }
}
