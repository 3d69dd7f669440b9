import Logging
import Synchronization

/// Log lines, rendered with their metadata, for assertions.
package final class LogCapture: Sendable {
    private let storage = Mutex<[String]>([])
    package init() {}
    package var lines: [String] { storage.withLock { $0 } }
    package func append(_ line: String) { storage.withLock { $0.append(line) } }
}

package struct CapturingLogHandler: LogHandler {
    package let capture: LogCapture
    package var logLevel: Logger.Level = .trace
    package var metadata: Logger.Metadata = [:]

    package init(capture: LogCapture) {
        self.capture = capture
    }

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    package func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        capture.append("\(event.level) \(event.message) \(merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
    }
}
