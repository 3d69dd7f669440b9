import Foundation

extension Process {
    /// How a child process ended.
    public struct Exit: Sendable, Equatable {
        public var status: Int32
        /// True when a signal ended it (`status` is then the signal number).
        public var bySignal: Bool

        public init(status: Int32, bySignal: Bool) {
            self.status = status
            self.bySignal = bySignal
        }
    }

    /// Waits for the process to end, reaping it with `waitpid`.
    ///
    /// `waitUntilExit` is not used: on Linux it can spin forever when called off
    /// the main thread (the exit is never noticed), which hung test runs.
    @discardableResult
    public func waitForExit(timeout: TimeInterval = 60) -> Exit? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            var status: Int32 = 0
            let result = waitpid(processIdentifier, &status, WNOHANG)
            if result == processIdentifier {
                let signal = status & 0x7F
                return signal == 0 ? Exit(status: (status >> 8) & 0xFF, bySignal: false) : Exit(status: signal, bySignal: true)
            }
            // Foundation reaped it first: its own record is then (or soon) final.
            if result == -1, errno == ECHILD, !isRunning {
                return Exit(status: terminationStatus, bySignal: terminationReason == .uncaughtSignal)
            }
            usleep(5_000)
        }
        return nil
    }
}
