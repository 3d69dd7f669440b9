import COpenSSL
import Foundation

/// A connected, non-blocking TCP socket to one node, optionally through TLS.
///
/// Every call blocks (in poll(2), bounded by a deadline), so a socket is only used
/// on its connection's dedicated thread. Closed when released.
final class RedisSocket {
    private let descriptor: Int32
    private let endpoint: RedisEndpoint
    /// The TLS session (`SSL *`); nil for plain TCP.
    private var tls: OpaquePointer?
    /// TLS without a client certificate, and nothing read yet: a server that requires
    /// one (`tls-auth-clients yes`) accepts the TLS 1.3 handshake, then sends an alert
    /// and closes, and the alert may be lost to a connection reset.
    private var mayBeRefusedForNoClientCertificate = false
    /// Where reads land; a slice of it is handed out until the next read.
    private let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 1)

    /// Connects to `endpoint` and, with `options.tls`, completes the TLS handshake with
    /// `tlsContext` (made for those options), both within `options.connectTimeout`.
    static func connect(to endpoint: RedisEndpoint, options: RedisConnectionOptions, tlsContext: TLSClientContext?) throws(RedisError) -> RedisSocket {
        let deadline = ContinuousClock.now + options.connectTimeout
        let socket = RedisSocket(descriptor: try openTCP(to: endpoint, until: deadline), endpoint: endpoint)
        if let tls = options.tls {
            // Fails closed: TLS settings without a context never fall back to plain TCP.
            guard let tlsContext else { throw socket.tlsFailure("no TLS context for a TLS connection") }
            try socket.startTLS(tls, context: tlsContext, until: deadline)
        }
        return socket
    }

    private init(descriptor: Int32, endpoint: RedisEndpoint) {
        self.descriptor = descriptor
        self.endpoint = endpoint
    }

    deinit {
        if let tls { SSL_free(tls) }
        Glibc.close(descriptor)
        readBuffer.deallocate()
    }

    // MARK: Reading and writing

    /// Writes all of `bytes`; each wait for the socket to accept more is bounded by `timeout`.
    func write(_ bytes: UnsafeRawBufferPointer, timeout: Duration) throws(RedisError) {
        do throws(RedisError) {
            try writeAll(bytes, timeout: timeout)
        } catch {
            throw explained(error)
        }
    }

    /// The bytes that arrived, waiting for some until `deadline`; nil when none came
    /// by then. The bytes are valid until the next read.
    func read(until deadline: ContinuousClock.Instant) throws(RedisError) -> UnsafeRawBufferPointer? {
        do throws(RedisError) {
            let bytes = try readSome(until: deadline)
            if bytes != nil { mayBeRefusedForNoClientCertificate = false }
            return bytes
        } catch {
            throw explained(error)
        }
    }

    /// A connection lost before the first reply of a TLS session without a client
    /// certificate says what the likely cause is.
    private func explained(_ error: RedisError) -> RedisError {
        guard error.code == .connection, mayBeRefusedForNoClientCertificate else { return error }
        var explained = error
        explained.message += " (right after the TLS handshake: does the server require a client certificate?)"
        return explained
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer, timeout: Duration) throws(RedisError) {
        var offset = 0
        while offset < bytes.count {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[offset...])
            switch try attemptWrite(rest) {
            case .transferred(let count):
                offset += count
            case .wouldBlock(let events):
                guard try wait(for: events, until: ContinuousClock.now + timeout) else {
                    throw RedisError(code: .timeout, message: "\(endpoint): cannot send within \(timeout)")
                }
            }
        }
    }

    private func readSome(until deadline: ContinuousClock.Instant) throws(RedisError) -> UnsafeRawBufferPointer? {
        while true {
            switch try attemptRead() {
            case .transferred(let count) where count > 0:
                return UnsafeRawBufferPointer(rebasing: readBuffer[..<count])
            case .transferred:
                continue
            case .wouldBlock(let events):
                guard try wait(for: events, until: deadline) else { return nil }
            }
        }
    }

    private enum Attempt {
        /// 0 after an interrupted call: try again.
        case transferred(Int)
        /// Wait for these poll(2) events, then try again.
        case wouldBlock(events: Int16)
    }

    private func attemptWrite(_ bytes: UnsafeRawBufferPointer) throws(RedisError) -> Attempt {
        if let tls {
            ERR_clear_error()
            let count = SSL_write(tls, bytes.baseAddress, Int32(clamping: bytes.count))
            return count > 0 ? .transferred(Int(count)) : try tlsAttemptFailure(tls, result: count, during: "send")
        }
        // MSG_NOSIGNAL: a peer-closed socket is an EPIPE error, not a SIGPIPE.
        let count = Glibc.send(descriptor, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
        if count >= 0 { return .transferred(count) }
        return try plainAttemptFailure(errno: errno, events: Int16(POLLOUT), during: "send")
    }

    private func attemptRead() throws(RedisError) -> Attempt {
        if let tls {
            ERR_clear_error()
            let count = SSL_read(tls, readBuffer.baseAddress, Int32(clamping: readBuffer.count))
            return count > 0 ? .transferred(Int(count)) : try tlsAttemptFailure(tls, result: count, during: "receive")
        }
        let count = Glibc.recv(descriptor, readBuffer.baseAddress, readBuffer.count, 0)
        if count > 0 { return .transferred(count) }
        if count == 0 { throw closedByServer() }
        return try plainAttemptFailure(errno: errno, events: Int16(POLLIN), during: "receive")
    }

    private func plainAttemptFailure(errno code: Int32, events: Int16, during operation: String) throws(RedisError) -> Attempt {
        switch code {
        case EAGAIN, EWOULDBLOCK: return .wouldBlock(events: events)
        case EINTR: return .transferred(0)
        default: throw RedisError(code: .connection, message: "\(endpoint): \(operation) failed: \(String(cString: strerror(code)))")
        }
    }

    /// What a failed `SSL_read`/`SSL_write` means: TLS may need to read to write
    /// and the other way round, so the wait is for whatever it asks.
    private func tlsAttemptFailure(_ tls: OpaquePointer, result: Int32, during operation: String) throws(RedisError) -> Attempt {
        let lastErrno = errno
        switch SSL_get_error(tls, result) {
        case SSL_ERROR_WANT_READ: return .wouldBlock(events: Int16(POLLIN))
        case SSL_ERROR_WANT_WRITE: return .wouldBlock(events: Int16(POLLOUT))
        case SSL_ERROR_ZERO_RETURN: throw closedByServer()
        case SSL_ERROR_SYSCALL where lastErrno == EINTR: return .transferred(0)
        case SSL_ERROR_SYSCALL:
            if lastErrno == 0 { throw closedByServer() }
            throw RedisError(code: .connection, message: "\(endpoint): \(operation) failed: \(String(cString: strerror(lastErrno)))")
        default:
            let failure = Self.openSSLFailure()
            if failure.peerClosed { throw closedByServer() }
            // A protocol failure or an alert from the server (such as a client certificate it requires).
            throw RedisError(code: .tls, message: "\(endpoint): TLS \(operation) failed: \(failure.reason)")
        }
    }

    private func closedByServer() -> RedisError {
        RedisError(code: .connection, message: "\(endpoint): connection closed by the server")
    }

    /// Waits until the socket is ready for `events` (or failed: the next call says
    /// how); false when `deadline` passed first.
    private func wait(for events: Int16, until deadline: ContinuousClock.Instant) throws(RedisError) -> Bool {
        var entry = pollfd(fd: descriptor, events: events, revents: 0)
        while true {
            let result = poll(&entry, 1, Self.milliseconds(until: deadline))
            if result > 0 { return true }
            if result == 0 {
                // poll(2) may wake a little early on some kernels; wait the rest.
                if ContinuousClock.now >= deadline { return false }
                continue
            }
            guard errno == EINTR else {
                throw RedisError(code: .connection, message: "\(endpoint): poll failed: \(String(cString: strerror(errno)))")
            }
        }
    }

    /// Milliseconds left until `deadline`, rounded up, for poll(2).
    private static func milliseconds(until deadline: ContinuousClock.Instant) -> Int32 {
        let remaining = deadline - ContinuousClock.now
        guard remaining > .zero else { return 0 }
        let (seconds, attoseconds) = remaining.components
        let milliseconds = seconds.multipliedReportingOverflow(by: 1000)
        guard !milliseconds.overflow else { return Int32.max }
        return Int32(clamping: milliseconds.partialValue + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
    }

    // MARK: Connecting

    /// Tries each address `endpoint.host` resolves to (IPv4 and IPv6), in order.
    private static func openTCP(to endpoint: RedisEndpoint, until deadline: ContinuousClock.Instant) throws(RedisError) -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var addresses: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(endpoint.host, String(endpoint.port), &hints, &addresses)
        guard status == 0, let addresses else {
            throw RedisError(code: .connection, message: "\(endpoint): cannot resolve host: \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(addresses) }
        var lastError = RedisError(code: .connection, message: "\(endpoint): no address to connect to")
        var next: UnsafeMutablePointer<addrinfo>? = addresses
        while let address = next {
            do throws(RedisError) {
                return try connectSocket(to: address.pointee, endpoint: endpoint, until: deadline)
            } catch {
                lastError = error
            }
            next = address.pointee.ai_next
        }
        throw lastError
    }

    private static func connectSocket(
        to address: addrinfo, endpoint: RedisEndpoint, until deadline: ContinuousClock.Instant
    ) throws(RedisError) -> Int32 {
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let descriptor = socket(address.ai_family, type, address.ai_protocol)
        guard descriptor >= 0 else {
            throw RedisError(code: .connection, message: "\(endpoint): cannot create a socket: \(String(cString: strerror(errno)))")
        }
        do throws(RedisError) {
            if Glibc.connect(descriptor, address.ai_addr, address.ai_addrlen) != 0 {
                guard errno == EINPROGRESS || errno == EINTR else { throw connectFailure(errno, endpoint) }
                var entry = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
                var ready: Int32
                repeat {
                    ready = poll(&entry, 1, milliseconds(until: deadline))
                } while ready < 0 && errno == EINTR
                guard ready > 0 else {
                    throw RedisError(code: .timeout, message: "\(endpoint): connect timed out")
                }
                var pending: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(descriptor, SOL_SOCKET, SO_ERROR, &pending, &length)
                if pending != 0 { throw connectFailure(pending, endpoint) }
            }
            configure(descriptor)
            return descriptor
        } catch {
            Glibc.close(descriptor)
            throw error
        }
    }

    private static func connectFailure(_ code: Int32, _ endpoint: RedisEndpoint) -> RedisError {
        RedisError(code: .connection, message: "\(endpoint): \(String(cString: strerror(code)))")
    }

    /// No Nagle delay (a pipeline's last packet goes out at once), and keepalive
    /// probes so a peer that vanished without a FIN (a cut network, a dead host) is
    /// noticed on an idle connection within about 30 s.
    private static func configure(_ descriptor: Int32) {
        func set(_ level: Int32, _ option: Int32, _ value: Int32) {
            var value = value
            setsockopt(descriptor, level, option, &value, socklen_t(MemoryLayout<Int32>.size))
        }
        set(Int32(IPPROTO_TCP), TCP_NODELAY, 1)
        set(SOL_SOCKET, SO_KEEPALIVE, 1)
        set(Int32(IPPROTO_TCP), TCP_KEEPIDLE, 15)
        set(Int32(IPPROTO_TCP), TCP_KEEPINTVL, 5)
        set(Int32(IPPROTO_TCP), TCP_KEEPCNT, 3)
    }

    // MARK: TLS

    private func startTLS(_ options: RedisTLSOptions, context: TLSClientContext, until deadline: ContinuousClock.Instant) throws(RedisError) {
        // The session holds its own reference to the context.
        guard let session = SSL_new(context.pointer) else {
            throw tlsFailure("cannot create a TLS session: \(Self.openSSLErrorReason())")
        }
        tls = session
        SSL_set_fd(session, descriptor)
        let name = options.serverName ?? endpoint.host
        if Self.isIPAddress(name) {
            // SNI carries host names only; an address is checked against the certificate's IP entries.
            if options.verify, X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(session), name) != 1 {
                throw tlsFailure("cannot check the server certificate against \(name)")
            }
        } else {
            copenssl_set_server_name_indication(session, name)
            if options.verify, SSL_set1_host(session, name) != 1 {
                throw tlsFailure("cannot check the server certificate against \(name)")
            }
        }
        while true {
            ERR_clear_error()
            let result = SSL_connect(session)
            if result == 1 {
                mayBeRefusedForNoClientCertificate = options.certFile == nil
                return
            }
            let lastErrno = errno
            let events: Int16
            switch SSL_get_error(session, result) {
            case SSL_ERROR_WANT_READ: events = Int16(POLLIN)
            case SSL_ERROR_WANT_WRITE: events = Int16(POLLOUT)
            case SSL_ERROR_SYSCALL where lastErrno == EINTR: continue
            case let failure: throw handshakeFailure(session, failure, errno: lastErrno)
            }
            guard try wait(for: events, until: deadline) else {
                throw RedisError(
                    code: .timeout,
                    message: "\(endpoint): TLS handshake timed out (is the server speaking TLS on this port?)")
            }
        }
    }

    /// Why the handshake failed. Certificate, name and protocol problems will not
    /// pass by retrying (`.tls`); a connection lost during the handshake is a
    /// network failure (`.connection`) and is retried.
    private func handshakeFailure(_ session: OpaquePointer, _ failure: Int32, errno lastErrno: Int32) -> RedisError {
        let verification = SSL_get_verify_result(session)
        if verification != X509_V_OK {
            let reason = String(cString: X509_verify_cert_error_string(verification))
            return tlsFailure("TLS handshake failed: certificate verify failed: \(reason)")
        }
        if failure == SSL_ERROR_SSL {
            let (reason, peerClosed) = Self.openSSLFailure()
            if peerClosed {
                return RedisError(code: .connection, message: "\(endpoint): TLS handshake failed: connection closed by the server")
            }
            let hint = reason.contains("wrong version number") || reason.contains("packet length too long")
                ? " (is the server speaking TLS on this port?)" : ""
            return tlsFailure("TLS handshake failed: \(reason)\(hint)")
        }
        let cause = lastErrno == 0 ? "connection closed by the server" : String(cString: strerror(lastErrno))
        return RedisError(code: .connection, message: "\(endpoint): TLS handshake failed: \(cause)")
    }

    private func tlsFailure(_ message: String) -> RedisError {
        RedisError(code: .tls, message: "\(endpoint): \(message)")
    }

    /// OpenSSL's reason for the first error queued on this thread, and whether it
    /// only means the peer closed the connection.
    private static func openSSLFailure() -> (reason: String, peerClosed: Bool) {
        let code = ERR_peek_error()
        return (openSSLErrorReason(), code != 0 && copenssl_is_unexpected_eof(code) != 0)
    }

    /// OpenSSL's reason for the first error queued on this thread.
    static func openSSLErrorReason() -> String {
        let code = ERR_get_error()
        guard code != 0 else { return "unknown error" }
        if let reason = ERR_reason_error_string(code) { return String(cString: reason) }
        var text = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &text, text.count)
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func isIPAddress(_ name: String) -> Bool {
        var address = in6_addr()
        return inet_pton(AF_INET, name, &address) == 1 || inet_pton(AF_INET6, name, &address) == 1
    }
}
