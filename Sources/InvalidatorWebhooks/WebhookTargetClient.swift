import AsyncHTTPClient
import Foundation
import InvalidatorCore
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One target's HTTP client (its own connection pool and TLS settings), circuit
/// breaker and metrics; sends its requests with retries.
final class WebhookTargetClient: Sendable {
    /// What became of one request after every attempt.
    struct Outcome: Sendable {
        /// nil: delivered.
        var error: WebhookError?
        var attempts: Int
    }

    let target: WebhookTarget
    private let retry: RetryPolicy
    private let breaker: CircuitBreaker
    private let metrics: WebhookTargetMetrics
    private let logger: Logger
    private let http: HTTPClient
    /// Where requests go: the URL, or with `tls.serverName` the URL with that host
    /// (mapped back to the URL's host by `dnsOverride`); nil when the URL cannot be requested.
    private let requestURL: String?
    /// The TLS settings with the CA, certificate and key files' contents, read again
    /// when the files change (a renewed certificate in a mounted Secret); nil without `tls`.
    private let tls: FileBackedMaterial<NIOSSL.TLSConfiguration, FileReadError>?

    /// How long a request trusts the TLS files' last check: a few `stat` calls a second at most.
    private static let tlsFilesCheckInterval: Duration = .seconds(1)

    init(target: WebhookTarget, retry: RetryPolicy, circuitBreaker: CircuitBreakerPolicy, metrics: WebhookTargetMetrics, logger: Logger) {
        self.target = target
        self.retry = retry
        self.metrics = metrics
        self.logger = logger
        // A probe that never reports is presumed lost after two timeouts.
        breaker = CircuitBreaker(policy: circuitBreaker, probeTimeout: target.timeout * 2)
        tls = target.tls.map { settings in
            FileBackedMaterial(
                paths: [settings.caFile, settings.certFile, settings.keyFile].compactMap { $0 },
                checkInterval: Self.tlsFilesCheckInterval
            ) { () throws(FileReadError) in try Self.tlsConfiguration(settings) }
        }
        // Each request carries the TLS settings: connections are pooled per settings, so
        // new files take effect on the next request and old connections go idle.
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: TimeAmount(target.timeout), read: TimeAmount(target.timeout)),
            decompression: .disabled)
        // A failed connection fails the request at once; retries are the dispatcher's, with its backoff.
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = WebhookDispatcher.concurrentRequestsPerTarget
        var url = URLComponents(string: target.url)
        if let host = url?.host, let serverName = target.tls?.serverName, serverName != host {
            configuration.dnsOverride = [serverName: host]
            url?.host = serverName
        }
        let scheme = url?.scheme?.lowercased()
        requestURL = (scheme == "http" || scheme == "https") && url?.host?.isEmpty == false ? url?.string : nil
        http = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }

    /// A client released without ``shutdown()`` (a worker built but never run) closes
    /// in the background: AsyncHTTPClient keeps it alive until it has, and stops debug
    /// builds whose clients are released open.
    deinit {
        http.shutdown { _ in }
    }

    /// Closes the connections; requests after this fail.
    func shutdown() async {
        try? await http.shutdown()
    }

    /// Sends `request`, retrying retriable failures with the policy's backoff (or the
    /// answer's `Retry-After`) until it is delivered, fails for good, runs out of
    /// attempts, or the circuit is open.
    func send(_ request: WebhookRequest) async -> Outcome {
        metrics.carried(items: request.items.count)
        let body = ByteBuffer(string: request.body.serialized())
        var attempts = 0
        var lastError: WebhookError?
        while true {
            guard breaker.permitsAttempt() else {
                let message = lastError.map { "circuit open after: \($0)" } ?? "circuit open: the target's recent requests failed"
                return failed(WebhookError(code: .circuitOpen, message: message), attempts: attempts, items: request.items.count)
            }
            attempts += 1
            let started = ContinuousClock.now
            let (error, retryAfter) = await attempt(body)
            metrics.request(succeeded: error == nil, took: ContinuousClock.now - started)
            guard let error else {
                breaker.recordSuccess()
                metrics.circuit(isOpen: false)
                return Outcome(error: nil, attempts: attempts)
            }
            if !error.countsAgainstTarget {
                breaker.recordSuccess()
            } else if breaker.recordFailure() {
                logger.warning("webhook target circuit opened", metadata: ["target": "\(target.name)", "error": "\(error.code)"])
            }
            metrics.circuit(isOpen: breaker.isOpen)
            lastError = error
            guard error.isRetriable, attempts < retry.attempts, !Task.isCancelled else {
                return failed(error, attempts: attempts, items: request.items.count)
            }
            metrics.retried()
            logger.debug("retrying webhook request", metadata: [
                "target": "\(target.name)", "attempt": "\(attempts)", "error": "\(error.code)",
            ])
            // Timer: the retry backoff, or as long as the target asked (within reason).
            try? await Task.sleep(for: retryAfter.map { min($0, WebhookDispatcher.longestRetryAfter) } ?? retry.backoff(afterAttempt: attempts))
        }
    }

    /// Logs the failure: a warning, except while the circuit is open (one warning
    /// said so already; every request would repeat it).
    private func failed(_ error: WebhookError, attempts: Int, items: Int) -> Outcome {
        logger.log(level: error.code == .circuitOpen ? .debug : .warning, "webhook request failed", metadata: [
            "target": "\(target.name)", "url": "\(target.redactedURL)", "error": "\(error.code)",
            "message": "\(error.message)", "attempts": "\(attempts)", "items": "\(items)",
        ])
        return Outcome(error: error, attempts: attempts)
    }

    /// One HTTP exchange: nil on a 2xx answer, else the error and, for 429 and 503,
    /// how long the answer's `Retry-After` asks to wait.
    private func attempt(_ body: ByteBuffer) async -> (WebhookError?, retryAfter: Duration?) {
        guard let requestURL else {
            return (WebhookError(code: .invalidURL, message: "\(target.name): not an http or https URL with a host"), nil)
        }
        var request = HTTPClientRequest(url: requestURL)
        if let tls {
            do throws(FileReadError) {
                request.tlsConfiguration = try currentTLS(tls)
            } catch {
                return (WebhookError(code: .tls, message: "\(target.name): cannot load the TLS files (\(error))"), nil)
            }
        }
        request.method = HTTPMethod(rawValue: target.method)
        for header in target.headers {
            request.headers.add(name: header.name, value: header.value)
        }
        if !request.headers.contains(name: "Content-Type") {
            request.headers.add(name: "Content-Type", value: "application/json")
        }
        request.body = .bytes(body)
        let timeout = target.timeout
        do {
            let (status, retryAfter) = try await Self.withTimeout(timeout) { [http, request] in
                let response = try await http.execute(request, deadline: .now() + TimeAmount(timeout))
                // Read to the end so the connection can serve the next request.
                for try await _ in response.body {}
                return (Int(response.status.code), response.headers.first(name: "Retry-After"))
            }
            if (200..<300).contains(status) { return (nil, nil) }
            let error = WebhookError(code: .http(status: status), message: "\(target.name) answered HTTP \(status)")
            let honoursRetryAfter = status == 429 || status == 503
            return (error, honoursRetryAfter ? retryAfter.flatMap { Self.retryAfterDelay($0) } : nil)
        } catch {
            return (Self.classify(error, target: target), nil)
        }
    }

    /// `operation`, or a `timeout` error once `timeout` has passed: AsyncHTTPClient's
    /// deadline covers the answer's head, not its body.
    private static func withTimeout<T: Sendable>(_ timeout: Duration, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await operation() }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else {
                throw WebhookError(code: .timeout, message: "no complete answer within \(timeout)")
            }
            return value
        }
    }

    /// `Retry-After` as delta-seconds or an HTTP-date; nil when it is neither.
    static func retryAfterDelay(_ value: String, now: Date = Date()) -> Duration? {
        let trimmed = value.trimmingCharacters(in: .whitespaces)
        if let seconds = Int(trimmed) { return .seconds(max(seconds, 0)) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: trimmed) else { return nil }
        let seconds = max(date.timeIntervalSince(now), 0)
        return .milliseconds(Int64((min(seconds, 86_400) * 1000).rounded()))
    }

    /// The error's kind; messages name the error type or TLS reason, never a host,
    /// URL or header.
    private static func classify(_ error: any Error, target: WebhookTarget) -> WebhookError {
        if let error = error as? WebhookError { return error }
        // Every address of the host refused: the first address's reason (a TLS refusal first).
        if let error = error as? NIOConnectionError {
            let reasons = error.connectionErrors.map(\.error)
            if let reason = reasons.first(where: isTLSError) ?? reasons.first { return classify(reason, target: target) }
            return WebhookError(code: .connection, message: "\(target.name): the host name did not resolve")
        }
        if isTLSError(error) {
            return WebhookError(code: .tls, message: "\(target.name): TLS refused (\(tlsReasons(error)))")
        }
        if let error = error as? HTTPClientError {
            switch error {
            case .deadlineExceeded, .readTimeout, .writeTimeout, .connectTimeout, .tlsHandshakeTimeout, .getConnectionFromPoolTimeout:
                return WebhookError(code: .timeout, message: "\(target.name): no complete answer within \(target.timeout)")
            case .invalidURL, .emptyHost, .emptyScheme:
                return WebhookError(code: .invalidURL, message: "\(target.name): the URL cannot be requested")
            case .remoteConnectionClosed:
                return WebhookError(code: .connection, message: "\(target.name): the connection closed before a complete answer")
            default:
                break
            }
        }
        if let error = error as? IOError {
            // The system's words ("Connection refused"), without the address.
            return WebhookError(code: .connection, message: "\(target.name): \(String(cString: strerror(error.errnoCode)))")
        }
        return WebhookError(code: .connection, message: "\(target.name): no answer (\(type(of: error)))")
    }

    private static func isTLSError(_ error: any Error) -> Bool {
        error is NIOSSLError || error is NIOSSLExtraError || error is BoringSSLError
    }

    /// BoringSSL's reason codes in `error` (`CERTIFICATE_VERIFY_FAILED`, ...), without
    /// the source file paths its description has; else the error's case.
    private static func tlsReasons(_ error: any Error) -> String {
        let text = "\(error)"
        let marker = "OPENSSL_internal:"
        var reasons: [Substring] = []
        var rest = text[...]
        while let range = rest.range(of: marker) {
            rest = rest[range.upperBound...]
            reasons.append(rest.prefix { $0.isLetter || $0.isNumber || $0 == "_" })
        }
        return reasons.isEmpty ? String(text.prefix { $0 != "(" }) : reasons.joined(separator: ", ")
    }

    /// The TLS settings from the files as they are now, or as they were when they last
    /// could be used: a rotation caught half-way keeps the previous certificate working.
    private func currentTLS(_ files: FileBackedMaterial<NIOSSL.TLSConfiguration, FileReadError>) throws(FileReadError) -> NIOSSL.TLSConfiguration {
        let (configuration, change) = try files.current()
        switch change {
        case .reloaded(let changed):
            logger.info("webhook TLS files reloaded", metadata: ["target": "\(target.name)", "paths": "\(changed.joined(separator: ", "))"])
        case .rejected(let error, _):
            logger.warning("webhook TLS files changed but cannot be used; the previous ones stay in use", metadata: [
                "target": "\(target.name)", "path": "\(error.path)", "reason": "\(error.reason)",
            ])
        case nil:
            break
        }
        return configuration
    }

    /// AsyncHTTPClient's TLS settings for `settings`, with the files' contents read now
    /// as PEM (NIOSSL would take a `.key` file for DER). An empty file, or a key that
    /// does not belong to the certificate, is refused.
    private static func tlsConfiguration(_ settings: InvalidatorCore.TLSConfiguration) throws(FileReadError) -> NIOSSL.TLSConfiguration {
        var tls = NIOSSL.TLSConfiguration.makeClientConfiguration()
        if let caFile = settings.caFile {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: caFile, isDirectory: &isDirectory), isDirectory.boolValue {
                // A hashed CA directory (c_rehash): OpenSSL looks certificates up in it as needed.
                tls.trustRoots = .file(caFile)
            } else {
                // In memory rather than `.file`: AsyncHTTPClient caches contexts by these
                // settings, so a renewed CA file under the same path would go unread.
                tls.trustRoots = .certificates(try readCertificates(caFile))
            }
        }
        if let certFile = settings.certFile, let keyFile = settings.keyFile {
            tls.certificateChain = try readCertificates(certFile).map { .certificate($0) }
            tls.privateKey = .privateKey(try reading(keyFile) { try NIOSSLPrivateKey(file: keyFile, format: .pem) })
            _ = try reading(keyFile) { try NIOSSLContext(configuration: tls) }
        }
        if !settings.verify {
            tls.certificateVerification = .none
        }
        return tls
    }

    private static func readCertificates(_ path: String) throws(FileReadError) -> [NIOSSLCertificate] {
        let certificates = try reading(path) { try NIOSSLCertificate.fromPEMFile(path) }
        guard !certificates.isEmpty else { throw FileReadError(path: path, reason: "no PEM certificate in it") }
        return certificates
    }

    /// `load`'s result; its failure as the file at `path` with BoringSSL's reasons.
    private static func reading<T>(_ path: String, _ load: () throws -> T) throws(FileReadError) -> T {
        do {
            return try load()
        } catch {
            throw FileReadError(path: path, reason: tlsReasons(error))
        }
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        self = .nanoseconds(duration.nanoseconds)
    }
}
