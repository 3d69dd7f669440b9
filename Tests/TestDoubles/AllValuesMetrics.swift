import CoreMetrics
import Synchronization

/// Keeps every value recorded by timers and every counter total, by label and dimensions.
package final class AllValuesMetrics: MetricsFactory, Sendable {
    private let timers = Mutex<[String: [Int64]]>([:])
    private let counters = Mutex<[String: Int64]>([:])
    private let recorders = Mutex<[String: [Double]]>([:])

    package init() {}

    package static func key(_ label: String, _ dimensions: [(String, String)]) -> String {
        label + "{" + dimensions.sorted { $0.0 < $1.0 }.map { "\($0.0)=\($0.1)" }.joined(separator: ",") + "}"
    }

    /// Nanoseconds recorded by the timer `label` (no dimensions), in order.
    package func recorded(_ label: String) -> [Int64] {
        timers.withLock { $0[Self.key(label, [])] ?? [] }
    }

    /// Nanoseconds recorded by the timer `label` with `dimensions`, in order.
    package func recorded(_ label: String, _ dimensions: [String: String]) -> [Int64] {
        timers.withLock { $0[Self.key(label, dimensions.map { ($0.key, $0.value) })] ?? [] }
    }

    /// Every value recorded by the recorder or gauge `label` with `dimensions`, in order.
    package func recordedValues(_ label: String, _ dimensions: [String: String]) -> [Double] {
        recorders.withLock { $0[Self.key(label, dimensions.map { ($0.key, $0.value) })] ?? [] }
    }

    package func counter(_ label: String, _ dimensions: [String: String]) -> Int64 {
        counters.withLock { $0[Self.key(label, dimensions.map { ($0.key, $0.value) })] ?? 0 }
    }

    /// One handler for every kind: each appends to (or adds into) the values kept under its key.
    private final class Handler: CounterHandler, RecorderHandler, TimerHandler, Sendable {
        let key: String
        let metrics: AllValuesMetrics
        init(_ key: String, _ metrics: AllValuesMetrics) {
            self.key = key
            self.metrics = metrics
        }
        func recordNanoseconds(_ duration: Int64) { metrics.timers.withLock { $0[key, default: []].append(duration) } }
        func increment(by amount: Int64) { metrics.counters.withLock { $0[key, default: 0] += amount } }
        func reset() { metrics.counters.withLock { $0[key] = 0 } }
        func record(_ value: Int64) { record(Double(value)) }
        func record(_ value: Double) { metrics.recorders.withLock { $0[key, default: []].append(value) } }
    }

    package func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler { Handler(Self.key(label, dimensions), self) }
    package func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler { Handler(Self.key(label, dimensions), self) }
    package func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler { Handler(Self.key(label, dimensions), self) }
    package func destroyCounter(_ handler: any CounterHandler) {}
    package func destroyRecorder(_ handler: any RecorderHandler) {}
    package func destroyTimer(_ handler: any TimerHandler) {}
}

/// The longest latency the worker records, in nanoseconds (about 31 years).
package let longestRecordedLatencyNanoseconds: Int64 = 1_000_000_000 * 1_000_000_000
