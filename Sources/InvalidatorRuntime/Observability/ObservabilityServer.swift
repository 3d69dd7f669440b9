import Hummingbird
import Logging
import ServiceLifecycle
import Synchronization

/// The HTTP listener on `http.listen`:
/// - `GET /metrics`: the Prometheus text exposition (when a renderer is given);
/// - `GET /healthz`: 200 while the process serves requests (liveness);
/// - `GET /readyz`: 200 once sources are subscribed and every pool answers PING,
///   else 503 with one line per reason.
///
/// A service of the worker's group, listed first so it shuts down last: metrics
/// and probes stay up while the sources drain.
public final class ObservabilityServer: Service, Sendable {
    private let host: String
    private let port: Int
    private let renderMetrics: (@Sendable () -> String)?
    private let readiness: @Sendable () -> Readiness
    private let logger: Logger
    private let bound = Atomic<Int>(0)

    init(
        listen: ListenAddress, renderMetrics: (@Sendable () -> String)?, readiness: @escaping @Sendable () -> Readiness,
        logger: Logger
    ) {
        self.host = listen.host
        self.port = listen.port
        self.renderMetrics = renderMetrics
        self.readiness = readiness
        var logger = logger
        logger[metadataKey: "component"] = "http"
        self.logger = logger
    }

    /// The port actually listened on (useful with port 0); 0 until listening.
    public var boundPort: Int { bound.load(ordering: .relaxed) }

    public func run() async throws {
        let router = Router()
        let renderMetrics = renderMetrics
        let readiness = readiness
        router.get("/metrics") { _, _ -> Response in
            guard let renderMetrics else {
                return Self.text(.notFound, "metrics are not enabled\n")
            }
            return Self.text(.ok, renderMetrics(), contentType: "text/plain; version=0.0.4; charset=utf-8")
        }
        router.get("/healthz") { _, _ -> Response in
            Self.text(.ok, "ok\n")
        }
        router.get("/readyz") { _, _ -> Response in
            let state = readiness()
            if state.isReady { return Self.text(.ok, "ready\n") }
            return Self.text(.serviceUnavailable, "not ready:\n" + state.problems.map { "- \($0)\n" }.joined())
        }
        let app = Application(
            router: router,
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: nil),
            onServerRunning: { [self] channel in
                let port = channel.localAddress?.port ?? 0
                self.bound.store(port, ordering: .relaxed)
                self.logger.info("serving /metrics /healthz /readyz", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
            },
            logger: logger
        )
        try await app.run()
    }

    private static func text(_ status: HTTPResponse.Status, _ body: String, contentType: String = "text/plain; charset=utf-8") -> Response {
        Response(
            status: status, headers: [.contentType: contentType],
            body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }
}

/// `host:port` of `http.listen`; `[::1]:9090` for IPv6.
public struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
              (0...65535).contains(port)
        else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.host = host.isEmpty ? "0.0.0.0" : host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
