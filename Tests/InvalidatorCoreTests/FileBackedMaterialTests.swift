import Foundation
import InvalidatorCore
import Synchronization
import Testing

/// A file replaced in place: read again when it changed, the last good contents kept
/// while it cannot be used, each change told once.
@Suite struct FileBackedMaterialTests {
    struct Unusable: Error {}

    @Test func aChangedFileIsReadAgainAndAnUnusableOneKeepsThePrevious() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("material-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data("one".utf8).write(to: file)
        let material = FileBackedMaterial<String, Unusable>(paths: [file.path], checkInterval: .zero) { () throws(Unusable) in
            guard let text = try? String(contentsOf: file, encoding: .utf8), !text.hasPrefix("bad") else { throw Unusable() }
            return text
        }
        #expect(try material.current().material == "one")
        #expect(try material.current().change == nil)

        try Data("two!".utf8).write(to: file)
        let reloaded = try material.current()
        #expect(reloaded.material == "two!")
        guard case .reloaded(let changed) = reloaded.change else { Issue.record("\(String(describing: reloaded.change))"); return }
        #expect(changed == [file.path])

        try Data("bad".utf8).write(to: file)
        let rejected = try material.current()
        #expect(rejected.material == "two!")
        guard case .rejected(_, let paths) = rejected.change else { Issue.record("\(String(describing: rejected.change))"); return }
        #expect(paths == [file.path])
        let again = try material.current()
        #expect(again.material == "two!" && again.change == nil, "told once per state of the files")
    }

    /// A rejection that lasts is told again (and the files tried again) every reminder
    /// interval, not at every look-up.
    @Test func aLastingRejectionIsToldAgainEachReminderInterval() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("material-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data("one".utf8).write(to: file)
        let builds = Mutex(0)
        let material = FileBackedMaterial<String, Unusable>(
            paths: [file.path], checkInterval: .zero, reminderInterval: .milliseconds(200)
        ) { () throws(Unusable) in
            builds.withLock { $0 += 1 }
            guard let text = try? String(contentsOf: file, encoding: .utf8), !text.hasPrefix("bad") else { throw Unusable() }
            return text
        }
        _ = try material.current()
        try Data("bad".utf8).write(to: file)
        guard case .rejected = try material.current().change else { Issue.record("the rejection is told"); return }
        let buildsAfterRejection = builds.withLock { $0 }
        for _ in 0..<20 { #expect(try material.current().change == nil) }
        #expect(builds.withLock { $0 } == buildsAfterRejection, "unchanged files are not read again at each look-up")
        try await Task.sleep(for: .milliseconds(250))
        let reminded = try material.current()
        #expect(reminded.material == "one")
        guard case .rejected = reminded.change else { Issue.record("told again: \(String(describing: reminded.change))"); return }
        #expect(builds.withLock { $0 } == buildsAfterRejection + 1, "tried again once")
    }

    @Test func withoutAnyUsableFileEveryLookUpFails() {
        let material = FileBackedMaterial<String, Unusable>(paths: ["/nonexistent/file"], checkInterval: .seconds(60)) { () throws(Unusable) in
            throw Unusable()
        }
        #expect(throws: Unusable.self) { try material.current() }
        #expect(throws: Unusable.self) { try material.current() }
    }
}
