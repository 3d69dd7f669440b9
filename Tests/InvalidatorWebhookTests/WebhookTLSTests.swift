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
