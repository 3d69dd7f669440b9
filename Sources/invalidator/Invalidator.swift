import ArgumentParser
import Foundation

struct Invalidator: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "invalidator",
        abstract: "Event-driven cache invalidation: change events in, precise Redis deletions out.",
        discussion: """
            Reads entity-change events from Kafka, Redis pub/sub or Redis Streams, maps each through \
            declarative rules to cache keys, patterns and tags, and applies them across Redis pools.
            """,
        subcommands: [RunCommand.self, ValidateCommand.self, ExplainCommand.self, ApplyCommand.self, PurgeCommand.self, ProbeCommand.self, ReplayCommand.self, DevKafkaCommand.self]
    )
}

/// A failure the user can act on: printed as one line, never a stack trace.
struct CommandFailure: Error, CustomStringConvertible {
    var message: String
    var exitCode: Int32 = 1
    var description: String { message }
}

@main
enum Main {
    static func main() async {
        // A write to a socket the peer has reset raises SIGPIPE, whose default action
        // ends the process: a client of /metrics or a Redis node would kill the worker.
        // Ignored, the write fails with EPIPE, which every caller handles.
        signal(SIGPIPE, SIG_IGN)
        do {
            var command = try Invalidator.parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let failure as CommandFailure {
            FileHandle.standardError.write(Data("error: \(failure.message)\n".utf8))
            exit(failure.exitCode)
        } catch {
            let code = Invalidator.exitCode(for: error)
            guard code != .success else { Invalidator.exit(withError: error) }
            // Usage problems exit 2, as the contract says, not ArgumentParser's 64.
            if code == .validationFailure {
                FileHandle.standardError.write(Data((Invalidator.fullMessage(for: error) + "\n").utf8))
                exit(2)
            }
            Invalidator.exit(withError: error)
        }
    }
}
