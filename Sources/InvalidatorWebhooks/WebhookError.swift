/// Why a webhook request failed. Messages never carry a header value, the URL or
/// a body: only status codes, error kinds and the target's name.
public struct WebhookError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Code: Sendable, Hashable, CustomStringConvertible {
        /// The target answered with a status outside 2xx.
        case http(status: Int)
        /// No complete answer within the target's `timeout`.
        case timeout
        /// Could not connect, or the connection broke before a complete answer.
        case connection
        /// The TLS handshake was refused (unknown CA, wrong name, no client
        /// certificate) or a CA, certificate or key file cannot be loaded.
        case tls
        /// The target's circuit breaker is open: its recent requests all failed.
        case circuitOpen
        /// The URL cannot be requested (no host, a scheme other than http/https).
        case invalidURL
        /// The item names a target the dispatcher was not given.
        case unknownTarget

        /// The stable text of the code, as dead letters and logs show it: `http-503`, `timeout`, ...
        public var description: String {
            switch self {
            case .http(let status): "http-\(status)"
            case .timeout: "timeout"
            case .connection: "connection"
            case .tls: "tls"
            case .circuitOpen: "circuit-open"
            case .invalidURL: "invalid-url"
            case .unknownTarget: "unknown-target"
            }
        }
    }

    public var code: Code
    public var message: String

    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    /// Whether the same request can succeed later: 5xx, 408 and 429 answers, timeouts
    /// and broken connections. Other 4xx answers, TLS refusals and bad URLs will not
    /// change by waiting.
    public var isRetriable: Bool {
        switch code {
        case .http(let status): status >= 500 || status == 408 || status == 429
        case .timeout, .connection: true
        case .tls, .circuitOpen, .invalidURL, .unknownTarget: false
        }
    }

    /// Whether the failure says the target is unwell, for its circuit breaker: it did
    /// not answer, or answered that it cannot serve now. A 4xx answer is a healthy
    /// target refusing this request.
    var countsAgainstTarget: Bool {
        switch code {
        case .http, .timeout, .connection: isRetriable
        case .tls: true
        case .circuitOpen, .invalidURL, .unknownTarget: false
        }
    }

    public var description: String { "\(code): \(message)" }
}
