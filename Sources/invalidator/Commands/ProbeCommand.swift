import ArgumentParser
import Foundation
import InvalidatorCore
import InvalidatorRuntime

struct ProbeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "Run one canary round against a running deployment and report per source and pool.",
        discussion: """
            For every topic, stream and channel of the config's sources, writes a canary key on \
            every node of the canary's pools, emits a canary event through the source, and waits \
            until the key is gone on every node: the deployment's workers must consume and apply \
            it (probe consumes nothing). Works whether or not canary.enabled is set, with the \
            config's canary settings or their defaults. Exit 0 when every source and pool passed, \
            1 otherwise, 2 for usage errors.

            Examples:
              invalidator probe --config invalidator.yaml
              invalidator probe --config invalidator.yaml --timeout 10s --format json
            """
    )

    @Option(help: "The config file.")
    var config: String = ProcessInfo.processInfo.environment["INVALIDATOR_CONFIG"] ?? "invalidator.yaml"

    @Option(help: "How long to wait for each key to be gone, such as 10s (default: canary.timeout, 60s unless set).")
    var timeout: String?

    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        if let timeout, parsedTimeout(timeout) == nil {
            throw ValidationError("--timeout '\(timeout)' is not a duration between 1s and 10m, such as 10s")
        }
    }

    private func parsedTimeout(_ text: String) -> Duration? {
        DurationParser.parse(text).flatMap { $0 >= .seconds(1) && $0 <= .seconds(600) ? $0 : nil }
    }

    func run() async throws {
        let logger = logging.bootstrap()
        let loaded = try loadConfiguration(config)
        var canary = loaded.configuration.canary
        if let timeout, let parsed = parsedTimeout(timeout) { canary.timeout = parsed }
        let pools = PoolSet(configuration: loaded.configuration, logger: logger)
        let workerID = "probe-\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)"
        let prober: CanaryProber
        do {
            prober = try CanaryProber(configuration: loaded.configuration, canary: canary, pools: pools, workerID: workerID, logger: logger)
        } catch {
            throw CommandFailure(message: "cannot create the Kafka producer: \(error)")
        }
        guard !prober.sources.isEmpty else {
            await pools.close()
            throw CommandFailure(message: "no source can carry a canary: Redis pub/sub subscriptions with only patterns have no channel to publish on")
        }
        let results = await prober.round()
        await prober.close()
        await pools.close()
        switch format {
        case .text: print(ProbeOutput.text(results), terminator: "")
        case .json: print(ProbeOutput.json(results).prettySerialized())
        }
        if !results.allSatisfy(\.passed) { throw ExitCode(1) }
    }
}

/// `probe`'s output: one line (or object) per source and pool.
enum ProbeOutput {
    static func text(_ results: [CanaryResult]) -> String {
        results.map { result in
            if let seconds = result.seconds {
                "pass \(result.source) pool \(result.pool): \(String(format: "%.3f", seconds))s\n"
            } else {
                "FAIL \(result.source) pool \(result.pool): \(result.failure ?? "")\n"
            }
        }.joined()
    }

    static func json(_ results: [CanaryResult]) -> JSONValue {
        .object([
            "passed": .bool(results.allSatisfy(\.passed)),
            "results": .array(results.map { result in
                var object: JSONObject = [
                    "source": .string(result.source.description), "pool": .string(result.pool), "passed": .bool(result.passed),
                ]
                if let seconds = result.seconds { object.fields.append(.init(key: "seconds", value: .number(String(format: "%.3f", seconds)))) }
                if let failure = result.failure { object.fields.append(.init(key: "error", value: .string(failure))) }
                return .object(object)
            }),
        ])
    }
}
