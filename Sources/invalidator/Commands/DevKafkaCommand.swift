import ArgumentParser
import Foundation
import InvalidatorKafka
import Logging
import UnixSignals

struct DevKafkaCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev-kafka",
        abstract: "Run a local Kafka for trying things out (librdkafka's mock cluster over loopback).",
        discussion: """
            Prints the bootstrap address and serves until interrupted. The mock keeps about 5 MB per \
            partition and does not end a long poll early, so clients should set fetch.wait.max.ms low \
            (the example config uses 5).

            Examples:
              invalidator dev-kafka
              invalidator dev-kafka --topics entity-changes:16,other:1
              invalidator dev-kafka --publish examples/events.jsonl
            """
    )

    @Option(help: "Topics to create, as name:partitions, comma separated.")
    var topics: String = "entity-changes:16"

    @Option(help: "Number of mock brokers, 1 to 16.")
    var brokers: Int32 = 1

    @Option(help: "A file of JSON events, one per line, published to the first topic once it exists.")
    var publish: String?

    @OptionGroup var logging: LoggingOptions

    func run() async throws {
        let logger = logging.bootstrap()
        let specifications = try topics.split(separator: ",").map { specification -> (String, Int32) in
            let parts = specification.split(separator: ":")
            guard parts.count <= 2, let name = parts.first, !name.isEmpty,
                  let partitions = parts.count == 2 ? Int32(parts[1]) : 1, partitions > 0
            else { throw ValidationError("--topics takes name:partitions pairs, got '\(specification)'") }
            return (String(name), partitions)
        }
        guard !specifications.isEmpty else { throw ValidationError("--topics names no topic") }
        guard (1...16).contains(brokers) else { throw ValidationError("--brokers must be 1 to 16, got \(brokers)") }
        let cluster = try KafkaMockCluster(brokers: brokers, logger: logger)
        for (name, partitions) in specifications {
            try cluster.createTopic(name, partitions: partitions)
        }
        if let publish {
            try await publishEvents(from: publish, topic: specifications[0].0, bootstrap: cluster.bootstrapServers, logger: logger)
        }
        // Written unbuffered, so a script reading the pipe sees the address at once.
        FileHandle.standardOutput.write(Data((cluster.bootstrapServers + "\n").utf8))
        logger.info("dev Kafka running", metadata: [
            "bootstrap": "\(cluster.bootstrapServers)", "topics": "\(specifications.map { "\($0.0):\($0.1)" })",
        ])
        for await _ in await UnixSignalsSequence(trapping: .sigterm, .sigint) { break }
        cluster.close()
    }

    private func publishEvents(from path: String, topic: String, bootstrap: String, logger: Logger) async throws {
        guard let contents = FileManager.default.contents(atPath: path) else {
            throw CommandFailure(message: "cannot read \(path)")
        }
        let lines = String(decoding: contents, as: UTF8.self).split(separator: "\n").filter { !$0.allSatisfy(\.isWhitespace) }
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(brokers: bootstrap), logger: logger)
        for line in lines {
            try await producer.send(KafkaProducerRecord(topic: topic, value: Array(line.utf8)))
        }
        try await producer.flush()
        await producer.close()
        logger.info("published events", metadata: ["count": "\(lines.count)", "topic": "\(topic)"])
    }
}
