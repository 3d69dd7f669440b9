import COpenSSL
import Foundation
import InvalidatorCore
import Synchronization

/// A configured client `SSL_CTX`, freed with its last holder; each session made from
/// it holds a reference of its own, so a replaced context lives on in open connections.
///
/// `@unchecked Sendable`: the context is not changed once ``make(_:)`` configured it,
/// and OpenSSL allows sessions to be made from one context on several threads.
final class TLSClientContext: @unchecked Sendable {
    let pointer: OpaquePointer

    private init(_ pointer: OpaquePointer) {
        self.pointer = pointer
    }

    deinit {
        SSL_CTX_free(pointer)
    }

    /// One context per TLS settings for all the connections of the process, read from
    /// the files again when one changed (checked at each new connection: a few `stat`
    /// calls beside a TLS handshake), the previous one kept while the new files cannot
    /// be used.
    private static let byOptions = Mutex<[RedisTLSOptions: FileBackedMaterial<TLSClientContext, RedisError>]>([:])

    /// The files behind the context for `options`, shared by every connection with them.
    static func files(for options: RedisTLSOptions) -> FileBackedMaterial<TLSClientContext, RedisError> {
        byOptions.withLock { contexts in
            if let files = contexts[options] { return files }
            let files = FileBackedMaterial(
                paths: [options.caFile, options.certFile, options.keyFile].compactMap { $0 }, checkInterval: .zero
            ) { () throws(RedisError) in try make(options) }
            contexts[options] = files
            return files
        }
    }

    /// A client context for `options`. Files are checked for readability first, for a
    /// clearer message than OpenSSL's; their contents never reach a message.
    private static func make(_ options: RedisTLSOptions) throws(RedisError) -> TLSClientContext {
        func failure(_ message: String) -> RedisError {
            RedisError(code: .tls, message: message)
        }
        func checkReadable(_ path: String, _ role: String) throws(RedisError) {
            if access(path, R_OK) != 0 {
                throw failure("cannot read the TLS \(role) file \(path): \(String(cString: strerror(errno)))")
            }
        }
        guard let pointer = SSL_CTX_new(TLS_client_method()) else {
            throw failure("cannot create a TLS context: \(RedisSocket.openSSLErrorReason())")
        }
        let context = TLSClientContext(pointer)
        ERR_clear_error()
        _ = copenssl_set_minimum_tls12(pointer)
        _ = copenssl_enable_partial_writes(pointer)
        SSL_CTX_set_verify(pointer, options.verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nil)
        if let caFile = options.caFile {
            try checkReadable(caFile, "CA")
            guard SSL_CTX_load_verify_locations(pointer, caFile, nil) == 1 else {
                throw failure("cannot load the TLS CA file \(caFile): \(RedisSocket.openSSLErrorReason())")
            }
        } else if SSL_CTX_set_default_verify_paths(pointer) != 1 {
            throw failure("cannot load the system CA store: \(RedisSocket.openSSLErrorReason())")
        }
        switch (options.certFile, options.keyFile) {
        case (let certFile?, let keyFile?):
            try checkReadable(certFile, "certificate")
            try checkReadable(keyFile, "key")
            guard SSL_CTX_use_certificate_chain_file(pointer, certFile) == 1 else {
                throw failure("cannot load the TLS certificate file \(certFile): \(RedisSocket.openSSLErrorReason())")
            }
            guard SSL_CTX_use_PrivateKey_file(pointer, keyFile, SSL_FILETYPE_PEM) == 1 else {
                throw failure("cannot load the TLS key file \(keyFile): \(RedisSocket.openSSLErrorReason())")
            }
            guard SSL_CTX_check_private_key(pointer) == 1 else {
                throw failure("the TLS key file \(keyFile) does not match the certificate \(certFile)")
            }
        case (nil, nil):
            break
        default:
            throw failure("a TLS client certificate needs both a certificate file and a key file")
        }
        return context
    }
}
