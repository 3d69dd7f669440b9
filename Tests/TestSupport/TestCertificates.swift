import Foundation

/// A CA, a server certificate for `localhost` and `127.0.0.1`, a client
/// certificate signed by the same CA, and an unrelated CA, made with the
/// `openssl` command line in a temporary folder (removed when released).
public final class TestCertificates: Sendable {
    public let directory: URL
    public var caFile: String { path("ca.crt") }
    public var serverCertificateFile: String { path("server.crt") }
    public var serverKeyFile: String { path("server.key") }
    public var clientCertificateFile: String { path("client.crt") }
    public var clientKeyFile: String { path("client.key") }
    /// A CA that signed none of these certificates.
    public var otherCAFile: String { path("other-ca.crt") }

    /// - Parameter serverCertificateExpired: the server certificate expired a day
    ///   before it was issued, for the "certificate has expired" refusal.
    public static func generate(serverCertificateExpired: Bool = false) async throws -> TestCertificates {
        try await runBlocking { try TestCertificates(serverCertificateExpired: serverCertificateExpired) }
    }

    private init(serverCertificateExpired: Bool) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("test-certificates-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try makeCA("ca", name: "invalidator test CA")
        try makeCA("other-ca", name: "unrelated test CA")
        try makeSigned(
            "server", name: "localhost", extensions: "subjectAltName=DNS:localhost,IP:127.0.0.1",
            days: serverCertificateExpired ? -1 : 2)
        try makeSigned("client", name: "invalidator test client", extensions: "extendedKeyUsage=clientAuth", days: 2)
    }

    deinit {
        try? FileManager.default.removeItem(at: directory)
    }

    /// `redis-server` arguments serving TLS on `port` with these files (the plain
    /// port stays open for the tests' own checks).
    public func serverArguments(port: Int, requireClientCertificates: Bool) -> [String] {
        [
            "--tls-port", String(port), "--tls-cert-file", serverCertificateFile, "--tls-key-file", serverKeyFile,
            "--tls-ca-cert-file", caFile, "--tls-auth-clients", requireClientCertificates ? "yes" : "no",
        ]
    }

    private func path(_ name: String) -> String {
        directory.appendingPathComponent(name).path
    }

    private static let keyOptions = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    private func makeCA(_ base: String, name: String) throws {
        try openssl(["req", "-x509"] + Self.keyOptions + [
            "-keyout", path("\(base).key"), "-out", path("\(base).crt"), "-days", "2", "-subj", "/CN=\(name)",
        ], producing: path("\(base).crt"))
    }

    /// Valid from now for `days`; a negative count ends before it starts.
    private func makeSigned(_ base: String, name: String, extensions: String, days: Int) throws {
        try openssl(["req"] + Self.keyOptions + ["-keyout", path("\(base).key"), "-out", path("\(base).csr"), "-subj", "/CN=\(name)"],
                    producing: path("\(base).csr"))
        try extensions.write(toFile: path("\(base).ext"), atomically: true, encoding: .utf8)
        try openssl([
            "x509", "-req", "-in", path("\(base).csr"), "-CA", caFile, "-CAkey", path("ca.key"), "-CAcreateserial",
            "-out", path("\(base).crt"), "-days", String(days), "-extfile", path("\(base).ext"),
        ], producing: path("\(base).crt"))
    }

    private func openssl(_ arguments: [String], producing file: String) throws {
        let output = try RedisServer.run("openssl", arguments)
        guard FileManager.default.fileExists(atPath: file) else {
            throw TestSupportError("openssl \(arguments.first ?? ""): \(output)")
        }
    }
}
