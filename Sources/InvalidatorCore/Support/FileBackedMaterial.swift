import Foundation
import Synchronization

/// Something built from files that are replaced while the process runs (TLS
/// certificates and keys that cert-manager renews in a mounted Secret): built again
/// when a file changed, and kept as it was when the new files cannot be built from
/// (a key not yet matching its certificate mid-rotation, a half-written file).
///
/// A change is a different inode, size, modification or status-change time of any of
/// the paths (following symlinks, so a Secret's symlink swap counts; a `chmod` too),
/// looked for at most once per `checkInterval`: a few `stat` calls. Files that could not
/// be built from are read again when they change or after `reminderInterval`, and a
/// rejection that lasts is told again each time: the previous material is still in use.
package final class FileBackedMaterial<Material: Sendable, Failure: Error>: Sendable {
    /// What a look-up did besides answering; the caller logs it.
    package enum Change: Sendable {
        /// The files changed and the material was built from them.
        case reloaded(changed: [String])
        /// The files changed and could not be built from: the previous material stays
        /// in use. Reported when it happens, then every `reminderInterval` while it lasts.
        case rejected(Failure, changed: [String])
    }

    private struct FileState: Hashable {
        var device: UInt64
        var inode: UInt64
        var size: Int64
        var modifiedSeconds: Int
        var modifiedNanoseconds: Int
        var statusChangedSeconds: Int
        var statusChangedNanoseconds: Int
        /// stat(2)'s errno when the file cannot be looked at (missing mid-swap).
        var statError: Int32
    }

    /// A failed build, answered from until the files change or `reminderInterval` passes.
    private struct Rejection {
        var states: [FileState]
        var error: Failure
        var reportedAt: ContinuousClock.Instant
    }

    private struct State {
        var material: Material?
        /// The files' states `material` was built from.
        var builtFrom: [FileState] = []
        var rejection: Rejection?
        var checkedAt: ContinuousClock.Instant?
    }

    private let paths: [String]
    private let checkInterval: Duration
    private let reminderInterval: Duration
    private let build: @Sendable () throws(Failure) -> Material
    private let state = Mutex(State())

    /// - Parameters:
    ///   - paths: the files `build` reads.
    ///   - checkInterval: how long a look-up trusts the last check; zero checks at each.
    ///   - reminderInterval: how often a rejection that lasts is told again.
    ///   - build: reads the files.
    package init(
        paths: [String], checkInterval: Duration, reminderInterval: Duration = .seconds(60),
        build: @escaping @Sendable () throws(Failure) -> Material
    ) {
        self.paths = paths
        self.checkInterval = checkInterval
        self.reminderInterval = reminderInterval
        self.build = build
    }

    /// The material, built again first when the files changed since it was built.
    /// Throws only while no build has succeeded yet: the last build's error.
    ///
    /// The build runs under the lock: concurrent look-ups wait for it rather than build
    /// twice. It runs only when the files changed, a few times per certificate renewal.
    package func current() throws(Failure) -> (material: Material, change: Change?) {
        let result: Result<(Material, Change?), Failure> = state.withLock { state in
            let now = ContinuousClock.now
            if let material = state.material, let checkedAt = state.checkedAt, now - checkedAt < checkInterval {
                return .success((material, nil))
            }
            state.checkedAt = now
            let before = fileStates()
            if let material = state.material, before == state.builtFrom {
                return .success((material, nil))
            }
            // Unchanged files that could not be built from are tried again (and the
            // rejection told again) only every `reminderInterval`: a failure that was not
            // the files' fault (no descriptor left) heals without them changing.
            if let rejection = state.rejection, rejection.states == before, now - rejection.reportedAt < reminderInterval {
                guard let material = state.material else { return .failure(rejection.error) }
                return .success((material, nil))
            }
            let changed = paths.indices.filter { !state.builtFrom.indices.contains($0) || state.builtFrom[$0] != before[$0] }.map { paths[$0] }
            do throws(Failure) {
                let built = try build()
                // A file written while it was read is read again at the next check (its
                // state differs from `builtFrom`); the first material is used meanwhile.
                let settled = fileStates() == before
                if let material = state.material, !settled {
                    state.checkedAt = nil
                    return .success((material, nil))
                }
                let change: Change? = state.material == nil ? nil : .reloaded(changed: changed)
                state = State(material: built, builtFrom: settled ? before : [], checkedAt: now)
                return .success((built, change))
            } catch {
                state.rejection = Rejection(states: before, error: error, reportedAt: now)
                guard let material = state.material else { return .failure(error) }
                return .success((material, .rejected(error, changed: changed)))
            }
        }
        return try result.get()
    }

    private func fileStates() -> [FileState] {
        paths.map { path in
            var info = stat()
            guard stat(path, &info) == 0 else {
                return FileState(
                    device: 0, inode: 0, size: 0, modifiedSeconds: 0, modifiedNanoseconds: 0,
                    statusChangedSeconds: 0, statusChangedNanoseconds: 0, statError: errno)
            }
            return FileState(
                device: UInt64(info.st_dev), inode: UInt64(info.st_ino), size: Int64(info.st_size),
                modifiedSeconds: info.st_mtim.tv_sec, modifiedNanoseconds: info.st_mtim.tv_nsec,
                statusChangedSeconds: info.st_ctim.tv_sec, statusChangedNanoseconds: info.st_ctim.tv_nsec, statError: 0)
        }
    }
}
