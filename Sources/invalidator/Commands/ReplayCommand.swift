import ArgumentParser
import Foundation
import InvalidatorCore
import InvalidatorRuntime
import InvalidatorWebhooks

struct ReplayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Re-execute dead letters; remove each record only once its work succeeded.",
        discussion: """
            Reads the dead-letter store (a Redis stream, or a Kafka topic read in the consumer group \
            <sources.kafka.group>.replay), oldest first, and for each matching record repeats the operations that failed, on the node they failed on. \
            Records without operations (invalid-json, schema-violation, unresolved-placeholder, \
            invalid-key), and every record with --reprocess, are planned again from the original event \
            with the current rules. A delivery-failed record sends its webhook items to its target again. \
            The notify and webhook work an event's record carries runs once the record's own work succeeded. \
            A record that fails again stays, with attempts incremented and only \
            the operations still failing. Concurrent replays never apply a record twice (replays of a \
            Kafka topic take turns; a second one exits 1), and running replay again is always safe. Exit 0 when nothing it handled remains failed, 1 otherwise.

            Examples:
              invalidator replay --config invalidator.yaml --dry-run
              invalidator replay --config invalidator.yaml --node redis-1:6379 --rate 500
              invalidator replay --config invalidator.yaml --target cdn
              invalidator replay --config invalidator.yaml --reason unresolved-placeholder --reprocess
              invalidator replay --config invalidator.yaml --since 2h --limit 100 --format json
            """
    )

    @Option(help: "The config file.")
    var config: String = ProcessInfo.processInfo.environment["INVALIDATOR_CONFIG"] ?? "invalidator.yaml"

    @Flag(help: "Print what would be replayed; change nothing.")
    var dryRun = false

    @Option(help: "Handle at most this many matching records.")
    var limit: Int?

    @Option(help: "Only records with this reason (repeatable): \(Self.reasons.joined(separator: ", ")).")
    var reason: [String] = []

    @Option(help: "Only records of this rule (repeatable).")
    var rule: [String] = []

    @Option(help: "Only records of this node, host:port (repeatable).")
    var node: [String] = []

    @Option(help: "Only delivery-failed records of this webhook target (repeatable).")
    var target: [String] = []

    @Option(help: "Only records written since this time: RFC 3339 (2026-11-20T10:00:00Z) or a duration ago (90m, 2h).")
    var since: String?

    @Option(help: "At most this many operations per second, so a recovering node is not flooded.")
    var rate: Double?

    @Flag(help: "Plan the original events again with the current rules instead of repeating the recorded operations.")
    var reprocess = false

    @Option(help: "How long a record (or a Kafka dead-letter topic) stays claimed by this replay if it dies mid-way (such as 5m).")
    var lockTTL: String = "5m"

    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text

    @OptionGroup var logging: LoggingOptions

    static let reasons = DeadLetter.Reason.allCases.map(\.rawValue)

    func validate() throws {
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
        if let rate, !(rate > 0) { throw ValidationError("--rate must be a positive number of operations per second") }
        for reason in reason where !Self.reasons.contains(reason) {
            throw ValidationError("unknown reason '\(reason)'; expected one of \(Self.reasons.joined(separator: ", "))")
        }
        for node in node where HostPort(node) == nil {
            throw ValidationError("--node '\(node)' is not host:port")
        }
        if let since, ReplayOptions.parseSince(since) == nil {
            throw ValidationError("--since '\(since)' is neither an RFC 3339 time nor a duration such as 2h")
        }
        guard let ttl = DurationParser.parse(lockTTL), ttl > .zero else {
            throw ValidationError("--lock-ttl '\(lockTTL)' is not a duration such as 5m")
        }
    }

    func run() async throws {
        let logger = logging.bootstrap()
        let loaded = try loadConfiguration(config)
        let replayer = Replayer(
            loaded: loaded, logger: logger, webhooks: WebhookDispatcher.forConfiguration(loaded.configuration, logger: logger))

        var options = ReplayOptions()
        options.dryRun = dryRun
        options.limit = limit
        options.reasons = reason
        options.rules = rule
        options.nodes = node
        options.targets = target
        options.sinceMilliseconds = since.flatMap { ReplayOptions.parseSince($0) }
        options.ratePerSecond = rate
        options.reprocess = reprocess
        options.lockTTL = DurationParser.parse(lockTTL) ?? .seconds(300)

        let result: ReplayResult
        do {
            result = try await replayer.run(options)
        } catch let error as ReplayStoreUnavailable {
            await replayer.close()
            throw CommandFailure(message: "\(error.description); stopped after: \(error.partial.summary)")
        } catch {
            await replayer.close()
            throw CommandFailure(message: "\(error)")
        }
        await replayer.close()

        switch format {
        case .text: print(result.text, terminator: "")
        case .json: print(result.json.prettySerialized())
        }
        if result.exitCode != 0 {
            throw ExitCode(result.exitCode)
        }
    }
}
