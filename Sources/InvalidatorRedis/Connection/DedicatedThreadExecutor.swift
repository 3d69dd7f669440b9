import Foundation

/// A serial executor that runs every job on one dedicated OS thread.
///
/// Socket and TLS calls block and a TLS session is not thread-safe, so a connection's
/// work must never run on Swift's cooperative pool (it would stall other tasks)
/// nor hop between threads. Jobs run in FIFO order.
final class DedicatedThreadExecutor: SerialExecutor, @unchecked Sendable {
    // @unchecked Sendable: `pendingJobs` and `isShuttingDown` are only touched
    // while holding `condition`, and there is no other mutable state.
    private let condition = NSCondition()
    private var pendingJobs: [UnownedJob] = []
    private var isShuttingDown = false

    init(name: String) {
        let thread = Thread { [self] in runLoop() }
        thread.name = name
        thread.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        pendingJobs.append(job)
        condition.signal()
        condition.unlock()
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    /// Lets the thread finish the jobs already queued, then exit.
    func shutdown() {
        condition.lock()
        isShuttingDown = true
        condition.signal()
        condition.unlock()
    }

    private func runLoop() {
        blockBrokenPipeSignal()
        while true {
            condition.lock()
            while pendingJobs.isEmpty && !isShuttingDown {
                condition.wait()
            }
            if pendingJobs.isEmpty {
                condition.unlock()
                return
            }
            let jobs = pendingJobs
            pendingJobs.removeAll(keepingCapacity: true)
            condition.unlock()
            for job in jobs {
                job.runSynchronously(on: asUnownedSerialExecutor())
            }
        }
    }

    /// OpenSSL writes with write(2); on a peer-closed socket that raises SIGPIPE,
    /// which would kill the process. Blocking it on this thread only turns it into
    /// an EPIPE error without changing the process-wide signal disposition.
    private func blockBrokenPipeSignal() {
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGPIPE)
        pthread_sigmask(SIG_BLOCK, &signals, nil)
    }
}
