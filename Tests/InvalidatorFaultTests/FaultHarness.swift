import Foundation
import InvalidatorKafka
import Logging
import TestSupport

// The fault suite runs the real executable, as an operator would, against real
// redis-server processes and librdkafka's mock Kafka cluster, breaks one thing on
// purpose per scenario, and asserts the invariant: every event's keys are deleted
// in the end (directly or after `replay`), the worker never exits unexpectedly.
// Each scenario prints the figure that matters as a `FIGURE` line.

/// Prints a scenario's measured figure so that `swift test` output carries it.
func report(_ scenario: String, _ figure: String) {
    print("FIGURE \(scenario): \(figure)")
}

/// The `invalidator` executable built next to the test bundle.
let invalidatorExecutable = URL(fileURLWithPath: CommandLine.arguments[0])
    .deletingLastPathComponent().appendingPathComponent("invalidator")

/// A scratch folder for one scenario's config, rules and logs; removed on release.
final class Scenario: Sendable {
    let folder: URL

    init() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("invalidator-fault-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(at: folder)
    }

    /// Writes `contents` to `name` in the folder and returns its path.
    @discardableResult
    func write(_ name: String, _ contents: String) throws -> String {
        let url = folder.appendingPathComponent(name)
        try contents.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }
}

/// One `invalidator` process.
final class InvalidatorProcess: Sendable {
    let process: ChildProcess
    let httpPort: Int
    let logFile: URL

    /// Starts `invalidator run --config configPath` with its HTTP endpoints on a free port.
    init(run configPath: String, environment: [String: String] = [:], logLevel: String = "warning") throws {
        httpPort = try RedisServer.freePort()
        logFile = URL(fileURLWithPath: configPath).deletingLastPathComponent()
            .appendingPathComponent("worker-\(UUID().uuidString.prefix(8)).log")
        _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        let log = try FileHandle(forWritingTo: logFile)
        defer { try? log.close() }
        process = try ChildProcess(
            invalidatorExecutable.path, ["run", "--config", configPath, "--log-level", logLevel],
            environment: ProcessInfo.processInfo.environment.merging(environment) { $1 }
                .merging(["INVALIDATOR__HTTP__LISTEN": "127.0.0.1:\(httpPort)"]) { $1 },
            standardOutput: log, standardError: log
        )
    }

    deinit {
        process.send(SIGKILL)
        process.waitForExit(timeout: 5)
    }

    var isRunning: Bool { process.isRunning }

    /// kill -9: no drain, no commit, no leaving the group.
    func kill() {
        process.send(SIGKILL)
        process.waitForExit(timeout: 10)
    }

    /// SIGTERM, then waits for the exit.
    func terminate(timeout: TimeInterval = 60) -> ChildProcess.Exit? {
        process.terminate()
        return process.waitForExit(timeout: timeout)
    }

    func get(_ path: String, timeout: Duration = .seconds(2)) throws -> HTTPProbe.Response {
        try HTTPProbe.get(port: httpPort, path: path, timeout: timeout)
    }

    /// Waits until `/readyz` answers 200.
    func waitUntilReady(timeout: Duration = .seconds(30)) async throws -> Bool {
        try await eventually(timeout: timeout) { (try? get("/readyz").status) == 200 }
    }

    /// The value of one Prometheus sample (`name{labels}`), summed over series whose
    /// labels include `labels`; nil when the metric has no such series.
    func metric(_ name: String, _ labels: [String: String] = [:]) throws -> Double? {
        let text = try get("/metrics").body
        var total: Double?
        for line in text.split(separator: "\n") where line.hasPrefix(name) && !line.hasPrefix("#") {
            let series = line.split(separator: " ")
            guard series.count >= 2, let value = Double(series[series.count - 1]) else { continue }
            let head = String(series[0])
            let metricName = head.prefix { $0 != "{" }
            guard metricName == name else { continue }
            guard labels.allSatisfy({ head.contains("\($0.key)=\"\($0.value)\"") }) else { continue }
            total = (total ?? 0) + value
        }
        return total
    }

    var log: String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }
}

/// Runs `invalidator arguments...` to completion (replay, validate ...).
func runInvalidator(_ arguments: [String], environment: [String: String] = [:], timeout: TimeInterval = 120) throws -> (exit: ChildProcess.Exit?, output: String) {
    let result = try ChildProcess.run(
        invalidatorExecutable.path, arguments,
        environment: ProcessInfo.processInfo.environment.merging(environment) { $1 }, timeout: timeout
    )
    return (result.exit, result.standardOutput)
}

/// A mock Kafka cluster with one topic, and a producer for it.
final class FaultKafka: Sendable {
    let cluster: KafkaMockCluster
    let topic: String
    let partitions: Int32

    init(topic: String = "entity-changes", partitions: Int32 = 4, brokers: Int32 = 1) throws {
        cluster = try KafkaMockCluster(brokers: brokers)
        try cluster.createTopic(topic, partitions: partitions)
        self.topic = topic
        self.partitions = partitions
    }

    deinit {
        cluster.close()
    }

    var bootstrapServers: String { cluster.bootstrapServers }

    /// Produces `events` round-robin over the partitions.
    func produce(_ events: [String]) async throws {
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(brokers: bootstrapServers), logger: Logger(label: "producer"))
        for (index, event) in events.enumerated() {
            try await producer.send(KafkaProducerRecord(topic: topic, partition: Int32(index) % partitions, value: Array(event.utf8)))
        }
        try await producer.flush()
        await producer.close()
    }
}

/// Native events for `entity` with ids `ids`.
func events(_ entity: String, _ ids: Range<Int>, op: String = "update") -> [String] {
    ids.map { #"{"entity":"\#(entity)","id":"\#($0)","op":"\#(op)"}"# }
}

// MARK: Committed offsets

extension FaultKafka {
    /// The offsets `group` has committed on the topic, summed over its partitions
    /// (a partition with none counts 0). Reads them without joining the group.
    func committedTotal(group: String) async throws -> Int64 {
        let offsets = try await KafkaConsumer.committed(
            by: group, brokers: bootstrapServers, partitions: (0..<partitions).map { TopicPartition(topic, $0) }, logger: Logger(label: "probe"))
        return offsets.values.reduce(0) { $0 + max($1, 0) }
    }
}
