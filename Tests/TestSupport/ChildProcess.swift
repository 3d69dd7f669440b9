import Foundation
import Synchronization

/// A child process started with `posix_spawn`, for tests.
///
/// Foundation's `Process.run()` is not used: on Linux it reads `/proc/self/fd`
/// with a 256-byte copy of each directory entry and crashes now and then
/// (swift-corelibs-foundation#5472), more often the more descriptors the test
/// process holds, which is many in a suite of servers and connections.
public final class ChildProcess: Sendable {
    /// How a child process ended.
    public struct Exit: Sendable, Equatable {
        public var status: Int32
        /// True when a signal ended it (`status` is then the signal number).
        public var bySignal: Bool

        public init(status: Int32, bySignal: Bool) {
            self.status = status
            self.bySignal = bySignal
        }

        public static let success = Exit(status: 0, bySignal: false)

        init(waitStatus status: Int32) {
            let signal = status & 0x7F
            self = signal == 0 ? Exit(status: (status >> 8) & 0xFF, bySignal: false) : Exit(status: signal, bySignal: true)
        }
    }

    public let processIdentifier: pid_t
    private let exit = Mutex<Exit?>(nil)

    /// Starts `executable` (a path, or a name looked up on PATH) with `arguments`.
    /// Standard streams left nil go to /dev/null; the child inherits no other
    /// descriptor of the test process.
    public init(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil,
        standardInput: FileHandle? = nil, standardOutput: FileHandle? = nil, standardError: FileHandle? = nil
    ) throws {
        Self.reapDetached()
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        let streams = [standardInput, standardOutput, standardError]
        for (target, handle) in streams.enumerated() {
            if let handle {
                posix_spawn_file_actions_adddup2(&actions, handle.fileDescriptor, Int32(target))
            } else {
                posix_spawn_file_actions_addopen(&actions, Int32(target), "/dev/null", target == 0 ? O_RDONLY : O_WRONLY, 0)
            }
        }
        if let closeFrom = Self.addCloseFrom { _ = closeFrom(&actions, 3) }

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let environmentEntries = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        let envp = environmentEntries.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let result = executable.contains("/")
            ? posix_spawn(&pid, executable, &actions, nil, argv, envp)
            : posix_spawnp(&pid, executable, &actions, nil, argv, envp)
        guard result == 0 else {
            throw TestSupportError("cannot start \(executable): \(String(cString: strerror(result)))")
        }
        processIdentifier = pid
    }

    /// Whether the child has not ended yet (reaps it when it has).
    public var isRunning: Bool {
        reap(blocking: false) == nil
    }

    /// Sends `signal` to the child, unless it has already been reaped.
    public func send(_ signal: Int32) {
        exit.withLock { exit in
            if exit == nil { _ = kill(processIdentifier, signal) }
        }
    }

    /// SIGTERM, as Kubernetes stops a pod.
    public func terminate() {
        send(SIGTERM)
    }

    /// Waits up to `timeout` for the child to end; nil when it is still running.
    @discardableResult
    public func waitForExit(timeout: TimeInterval = 60) -> Exit? {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let exit = reap(blocking: false) { return exit }
            if Date() >= deadline { return nil }
            usleep(5_000)
        }
    }

    /// Leaves the child to run on its own: it is reaped, if it has ended, the next
    /// time any child is started, so no zombie piles up.
    public func detach() {
        Self.detached.withLock { $0.append(self) }
    }

    private func reap(blocking: Bool) -> Exit? {
        exit.withLock { exit in
            if let exit { return exit }
            var status: Int32 = 0
            let result = waitpid(processIdentifier, &status, blocking ? 0 : WNOHANG)
            if result == processIdentifier {
                exit = Exit(waitStatus: status)
            } else if result == -1 {
                // Not our child any more (reaped elsewhere): it has ended, how is unknown.
                exit = Exit(status: -1, bySignal: false)
            }
            return exit
        }
    }

    private static let detached = Mutex<[ChildProcess]>([])

    private static func reapDetached() {
        detached.withLock { children in
            children.removeAll { !$0.isRunning }
        }
    }

    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34+), which Swift's
    /// Glibc module does not export.
    private static let addCloseFrom: AddCloseFrom? = {
        guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: AddCloseFrom.self)
    }()
}

extension ChildProcess {
    /// What a program run to completion printed.
    public struct Output: Sendable {
        public var exit: Exit?
        /// Standard output, and standard error too unless asked for apart.
        public var standardOutput: String
        /// Empty unless asked for apart from standard output.
        public var standardError: String
    }

    /// Runs a program to completion (killing it after `timeout`) and returns what it
    /// printed, both streams interleaved as a terminal shows them unless
    /// `separateStandardError`.
    public static func run(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil,
        input: Data? = nil, timeout: TimeInterval = 120, separateStandardError: Bool = false
    ) throws -> Output {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("child-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        func file(_ name: String, _ contents: Data = Data()) throws -> (URL, FileHandle) {
            let url = folder.appendingPathComponent(name)
            _ = FileManager.default.createFile(atPath: url.path, contents: contents)
            return (url, try FileHandle(forUpdating: url))
        }
        let (outputURL, output) = try file("stdout")
        let (errorURL, errors) = separateStandardError ? try file("stderr") : (outputURL, output)
        let inputHandle = try input.map { try file("stdin", $0).1 }
        defer {
            try? output.close()
            if separateStandardError { try? errors.close() }
            try? inputHandle?.close()
        }
        let child = try ChildProcess(
            executable, arguments, environment: environment,
            standardInput: inputHandle, standardOutput: output, standardError: errors
        )
        let exit = child.waitForExit(timeout: timeout)
        if exit == nil {
            child.send(SIGKILL)
            child.waitForExit(timeout: 10)
        }
        return Output(
            exit: exit,
            standardOutput: (try? String(contentsOf: outputURL, encoding: .utf8)) ?? "",
            standardError: separateStandardError ? (try? String(contentsOf: errorURL, encoding: .utf8)) ?? "" : ""
        )
    }
}
