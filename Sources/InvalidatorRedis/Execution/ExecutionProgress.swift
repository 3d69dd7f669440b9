/// Lets a caller see that a long execution is still moving: a pattern or tag
/// purge over a huge keyspace may take minutes, one SCAN / SSCAN page at a time.
///
/// A task-local, so it reaches the per-node tasks a pool starts (child tasks
/// inherit it) without every layer in between passing it on.
package enum ExecutionProgress {
    /// Called after each step of a pattern or tag purge (a page scanned, a page's
    /// keys unlinked on one node). Must be cheap and must not block. Private: other
    /// modules bind it only through ``reporting(to:during:)``.
    @TaskLocal private static var onStep: (@Sendable () -> Void)?

    /// Runs `operation` with `observer` told of each step, and so is every observer
    /// bound around this call (the pattern stage counts steps, the pipeline inside it
    /// beats the loop's heartbeat). Other modules must not call `$onStep.withValue`
    /// themselves: in release builds (Swift 6.3) that call, inlined into another
    /// module, passed a null task-local key and crashed the worker on its first batch.
    @inline(never)
    package static func reporting<Result: Sendable>(
        to observer: @escaping @Sendable () -> Void, during operation: () async -> Result
    ) async -> Result {
        let outer = onStep
        return await $onStep.withValue({
            observer()
            outer?()
        }) { await operation() }
    }

    static func stepDone() {
        onStep?()
    }
}
