import Foundation
import InvalidatorCore
import Testing

/// `explain --format json` output is a contract for scripts: each `Golden/NAME.event.json`
/// must plan to exactly `Golden/NAME.plan.json` under `Golden/rules.yaml`.
/// Run with `UPDATE_GOLDEN=1` to rewrite the expectations after an intended change.
@Suite struct ExplainGoldenTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden")

    static var cases: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.filter { $0.hasSuffix(".event.json") }.map { String($0.dropLast(".event.json".count)) }.sorted()
    }

    @Test func thereAreGoldenCases() {
        #expect(Self.cases.count >= 6)
    }

    @Test(arguments: cases)
    func explainJSONMatchesGolden(_ name: String) throws {
        let rules = try RulesLoader.load(
            yaml: String(contentsOf: Self.folder.appendingPathComponent("rules.yaml"), encoding: .utf8), file: "rules.yaml")
        let planner = Planner(rules: rules, pools: [PoolTarget(name: "primary"), PoolTarget(name: "edge", tagPrefix: "t:")])
        let event = try EventDecoder().decode(Array(Data(contentsOf: Self.folder.appendingPathComponent("\(name).event.json"))))
        let actual = PlanDescription.json(planner.plan(event)).prettySerialized() + "\n"
        let expectedURL = Self.folder.appendingPathComponent("\(name).plan.json")
        if ProcessInfo.processInfo.environment["UPDATE_GOLDEN"] == "1" {
            try actual.write(to: expectedURL, atomically: true, encoding: .utf8)
        }
        let expected = try String(contentsOf: expectedURL, encoding: .utf8)
        #expect(actual == expected)
    }
}
