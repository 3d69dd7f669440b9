import Foundation
import InvalidatorCore
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

    @Test func withoutAnyUsableFileEveryLookUpFails() {
        let material = FileBackedMaterial<String, Unusable>(paths: ["/nonexistent/file"], checkInterval: .seconds(60)) { () throws(Unusable) in
            throw Unusable()
        }
        #expect(throws: Unusable.self) { try material.current() }
        #expect(throws: Unusable.self) { try material.current() }
    }
}
