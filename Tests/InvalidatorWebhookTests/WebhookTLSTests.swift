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

/// Client certificates replaced in place, as cert-manager renews a mounted Secret.
@Suite(.timeLimit(.minutes(2))) struct WebhookCertificateRotationTests {
    /// Longer than the client's check of the TLS files (every second).
    private let check: Duration = .milliseconds(1300)

    @Test func aRotatedClientCertificateIsUsedWithoutARestartAndABrokenOneIsNot() async throws {
        let otherCA = try await TestCertificates.generate()
        let certificates = try await TestCertificates.generate()
        let server = try HTTPTestServer(certificates: certificates, requireClientCertificate: true)
        // Each request on a connection of its own, so each one's TLS settings are tried.
        server.setDefaultReply(.answer(status: 200, headers: ["Connection": "close"]))
        let mounted = RotatedFiles(in: certificates.directory)
        try mounted.write(certificate: otherCA.clientCertificateFile, key: otherCA.clientKeyFile)
        var target = WebhookTarget(name: "cdn", url: server.baseURL + "/purge")
        var tls = TLSConfiguration()
        tls.caFile = certificates.caFile
        tls.certFile = mounted.certificateFile
        tls.keyFile = mounted.keyFile
        target.tls = tls

        try await withDispatcher([target], retry: RetryPolicy(attempts: 1), circuitBreaker: CircuitBreakerPolicy(failureThreshold: 1000)) {
            dispatcher in
            let refused = await dispatcher.deliver([tagsItem(["a"])])
            #expect(refused.count == 1, "the server refuses a certificate from another CA")

            try mounted.write(certificate: certificates.clientCertificateFile, key: certificates.clientKeyFile)
            #expect(try await eventually { await dispatcher.deliver([tagsItem(["b"])]).isEmpty })

            // Half-written: the previous certificate stays in use.
            try Data("-----BEGIN CERTIFICATE-----\nMIIB".utf8).write(to: URL(fileURLWithPath: mounted.certificateFile))
            try await Task.sleep(for: check)
            #expect(await dispatcher.deliver([tagsItem(["c"])]).isEmpty)

            // Mid-rotation: a new certificate whose key is not written yet does not fit the old key.
            try Data(contentsOf: URL(fileURLWithPath: otherCA.clientCertificateFile)).write(to: URL(fileURLWithPath: mounted.certificateFile))
            try await Task.sleep(for: check)
            let accepted = server.connectionsAccepted
            #expect(await dispatcher.deliver([tagsItem(["d"])]).isEmpty)
            #expect(server.connectionsAccepted > accepted, "the request made a new connection with the kept certificate")
        }
        #expect(server.requests.map(tags) == [["b"], ["c"], ["d"]])
    }
}

extension WebhookCertificateRotationTests {
    /// A renewed CA bundle under the same path is trusted without a restart (the client
    /// reads it into memory: a CA given to AsyncHTTPClient by path would be cached by it).
    @Test func aRenewedCAFileIsTrustedWithoutARestart() async throws {
        let otherCA = try await TestCertificates.generate()
        let certificates = try await TestCertificates.generate()
        let server = try HTTPTestServer(certificates: certificates)
        server.setDefaultReply(.answer(status: 200, headers: ["Connection": "close"]))
        let mountedCA = certificates.directory.appendingPathComponent("mounted-ca.pem")
        try Data(contentsOf: URL(fileURLWithPath: otherCA.caFile)).write(to: mountedCA)
        var target = WebhookTarget(name: "cdn", url: server.baseURL + "/purge")
        var tls = TLSConfiguration()
        tls.caFile = mountedCA.path
        target.tls = tls

        try await withDispatcher([target], retry: RetryPolicy(attempts: 1), circuitBreaker: CircuitBreakerPolicy(failureThreshold: 1000)) {
            dispatcher in
            #expect(await dispatcher.deliver([tagsItem(["a"])]).map(\.errorClass) == ["tls"], "a CA that did not sign the server")
            try Data(contentsOf: URL(fileURLWithPath: certificates.caFile)).write(to: mountedCA)
            #expect(try await eventually { await dispatcher.deliver([tagsItem(["b"])]).isEmpty })
        }
        #expect(server.requests.map(tags) == [["b"]])
    }
}

/// A client certificate and key at fixed paths, overwritten in place.
private struct RotatedFiles {
    let certificateFile: String
    let keyFile: String

    init(in directory: URL) {
        certificateFile = directory.appendingPathComponent("mounted-tls.crt").path
        keyFile = directory.appendingPathComponent("mounted-tls.key").path
    }

    func write(certificate: String, key: String) throws {
        try Data(contentsOf: URL(fileURLWithPath: certificate)).write(to: URL(fileURLWithPath: certificateFile))
        try Data(contentsOf: URL(fileURLWithPath: key)).write(to: URL(fileURLWithPath: keyFile))
    }
}
