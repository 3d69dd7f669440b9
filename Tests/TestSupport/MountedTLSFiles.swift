import Foundation

/// TLS files at fixed paths in `directory`, overwritten in place as cert-manager renews
/// a mounted Secret: what a client configured with these paths reads.
public struct MountedTLSFiles: Sendable {
    public let caFile: String
    public let certificateFile: String
    public let keyFile: String

    public init(in directory: URL) {
        caFile = directory.appendingPathComponent("mounted-ca.pem").path
        certificateFile = directory.appendingPathComponent("mounted-tls.crt").path
        keyFile = directory.appendingPathComponent("mounted-tls.key").path
    }

    /// Copies `certificate` and, unless nil (a rotation caught before its key), `key` over the mounted pair.
    public func mount(certificate: String, key: String?) throws {
        try Self.copy(certificate, to: certificateFile)
        if let key { try Self.copy(key, to: keyFile) }
    }

    /// Copies `ca` over the mounted CA file.
    public func mount(ca: String) throws {
        try Self.copy(ca, to: caFile)
    }

    /// A certificate cut off after its first bytes, as a reader may catch a write.
    public func writeHalfCertificate() throws {
        try Data("-----BEGIN CERTIFICATE-----\nMIIB".utf8).write(to: URL(fileURLWithPath: certificateFile))
    }

    private static func copy(_ source: String, to destination: String) throws {
        try Data(contentsOf: URL(fileURLWithPath: source)).write(to: URL(fileURLWithPath: destination))
    }
}
