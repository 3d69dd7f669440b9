import Foundation
import InvalidatorCore
import InvalidatorWebhooks
import TestSupport
import Testing

/// HTTPS targets against a TLS test server with certificates from a test CA.
@Suite(.timeLimit(.minutes(2))) struct WebhookTLSTests {
    private func httpsTarget(_ server: HTTPTestServer, url: String? = nil, _ configure: (inout TLSConfiguration) -> Void) -> WebhookTarget {
        var target = WebhookTarget(name: "cdn", url: url ?? server.baseURL + "/purge")
        var tls = TLSConfiguration()
        configure(&tls)
        target.tls = tls
        return target
    }

    @Test func theConfiguredCAVerifiesTheServer() async throws {
        let certificates = try await TestCertificates.generate()
        let server = try HTTPTestServer(certificates: certificates)
        let failures = try await withDispatcher([httpsTarget(server) { $0.caFile = certificates.caFile }]) {
            await $0.deliver([tagsItem(["a"])])
        }
        #expect(failures.isEmpty)
        #expect(server.requests.map(\.bodyText) == [#"{"site":"www","tags":["a"]}"#])
    }

    @Test func aServerFromAnotherCAIsRefusedWithoutRetries() async throws {
        let certificates = try await TestCertificates.generate()
        let server = try HTTPTestServer(certificates: certificates)
        let failures = try await withDispatcher([httpsTarget(server) { $0.caFile = certificates.otherCAFile }]) {
            await $0.deliver([tagsItem(["a"])])
        }
        #expect(failures.map(\.errorClass) == ["tls"])
        #expect(failures.map(\.attempts) == [1])
        #expect(server.requests.isEmpty)
    }

    @Test func verificationOffAcceptsAnyCertificate() async throws {
        let certificates = try await TestCertificates.generate()
        let server = try HTTPTestServer(certificates: certificates)
        let unverified = httpsTarget(server) {
            $0.caFile = certificates.otherCAFile
            $0.verify = false
        }
        let failures = try await withDispatcher([unverified]) { await $0.deliver([tagsItem(["a"])]) }
        #expect(failures.isEmpty)
        #expect(server.requests.count == 1)
    }

    /// The URL names an address; requests go there with `serverName` as SNI and Host.
    /// (Not a check that the certificate is verified against that name: the test
    /// certificate also holds the address, which NIOSSL accepts on its own.)
    @Test func theServerNameIsSentForTheURLsHost() async throws {
        let certificates = try await TestCertificates.generate()
        let server = try HTTPTestServer(certificates: certificates)
        let byAddress = httpsTarget(server, url: "https://127.0.0.1:\(server.port)/purge") {
            $0.caFile = certificates.caFile
            $0.serverName = "localhost"
        }
        #expect(try await withDispatcher([byAddress]) { await $0.deliver([tagsItem(["a"])]) }.isEmpty)
        #expect(server.requests.first?.headers["host"] == "localhost:\(server.port)")
    }

    @Test func aClientCertificateIsShownWhenConfigured() async throws {
        let certificates = try await TestCertificates.generate()
        let server = try HTTPTestServer(certificates: certificates, requireClientCertificate: true)
        let withCertificate = httpsTarget(server) {
            $0.caFile = certificates.caFile
            $0.certFile = certificates.clientCertificateFile
            $0.keyFile = certificates.clientKeyFile
        }
        #expect(try await withDispatcher([withCertificate]) { await $0.deliver([tagsItem(["a"])]) }.isEmpty)
        #expect(server.requests.count == 1)

        let without = httpsTarget(server) { $0.caFile = certificates.caFile }
        let failures = try await withDispatcher([without], retry: RetryPolicy(attempts: 1)) { await $0.deliver([tagsItem(["a"])]) }
        #expect(failures.count == 1, "the server refuses a client without a certificate")
        #expect(server.requests.count == 1)
    }
}

/// TLS files replaced in place, as cert-manager renews a mounted Secret.
@Suite(.timeLimit(.minutes(2))) struct WebhookCertificateRotationTests {
    /// Longer than the client's check of the TLS files (every second).
    private let check: Duration = .milliseconds(1300)

    /// A target at `server` with `tls`, each delivery tried once, its circuit never opening;
    /// the server answers each request on a connection of its own, so each one's TLS settings are tried.
    private func withTarget(
        at server: HTTPTestServer, tls: TLSConfiguration, _ body: (WebhookDispatcher) async throws -> Void
    ) async throws {
        server.setDefaultReply(.answer(status: 200, headers: ["Connection": "close"]))
        var target = WebhookTarget(name: "cdn", url: server.baseURL + "/purge")
        target.tls = tls
        try await withDispatcher([target], retry: RetryPolicy(attempts: 1), circuitBreaker: CircuitBreakerPolicy(failureThreshold: 1000), body)
    }

    @Test func aRotatedClientCertificateIsUsedWithoutARestartAndABrokenOneIsNot() async throws {
        let otherCA = try await TestCertificates.generate()
        let certificates = try await TestCertificates.generate()
        let server = try HTTPTestServer(certificates: certificates, requireClientCertificate: true)
        let mounted = MountedTLSFiles(in: certificates.directory)
        try mounted.mount(certificate: otherCA.clientCertificateFile, key: otherCA.clientKeyFile)
        var tls = TLSConfiguration()
        tls.caFile = certificates.caFile
        tls.certFile = mounted.certificateFile
        tls.keyFile = mounted.keyFile

        try await withTarget(at: server, tls: tls) { dispatcher in
            let refused = await dispatcher.deliver([tagsItem(["a"])])
            #expect(refused.count == 1, "the server refuses a certificate from another CA")

            try mounted.mount(certificate: certificates.clientCertificateFile, key: certificates.clientKeyFile)
            #expect(try await eventually { await dispatcher.deliver([tagsItem(["b"])]).isEmpty })

            // Half-written: the previous certificate stays in use.
            try mounted.writeHalfCertificate()
            try await Task.sleep(for: check)
            #expect(await dispatcher.deliver([tagsItem(["c"])]).isEmpty)

            // Mid-rotation: a new certificate whose key is not written yet does not fit the old key.
            try mounted.mount(certificate: otherCA.clientCertificateFile, key: nil)
            try await Task.sleep(for: check)
            let accepted = server.connectionsAccepted
            #expect(await dispatcher.deliver([tagsItem(["d"])]).isEmpty)
            #expect(server.connectionsAccepted > accepted, "the request made a new connection with the kept certificate")
        }
        #expect(server.requests.map(tags) == [["b"], ["c"], ["d"]])
    }

    /// A renewed CA bundle under the same path is trusted without a restart (the client
    /// reads it into memory: a CA given to AsyncHTTPClient by path would be cached by it).
    @Test func aRenewedCAFileIsTrustedWithoutARestart() async throws {
        let certificates = try await TestCertificates.generate()
        let server = try HTTPTestServer(certificates: certificates)
        let mounted = MountedTLSFiles(in: certificates.directory)
        try mounted.mount(ca: certificates.otherCAFile)
        var tls = TLSConfiguration()
        tls.caFile = mounted.caFile

        try await withTarget(at: server, tls: tls) { dispatcher in
            #expect(await dispatcher.deliver([tagsItem(["a"])]).map(\.errorClass) == ["tls"], "a CA that did not sign the server")
            try mounted.mount(ca: certificates.caFile)
            #expect(try await eventually { await dispatcher.deliver([tagsItem(["b"])]).isEmpty })
        }
        #expect(server.requests.map(tags) == [["b"]])
    }
}
