import InvalidatorRuntime
import TestSupport
import Testing

@Suite struct EventPipelineTests {
    /// A batch this large is decoded and planned by several tasks at once; the
    /// result must be the one a single pass gives: every good event applied, every
    /// bad one dead-lettered with its own reason, in the batch's order.
    @Test func aLargeBatchPreparedInPartsKeepsEveryEventAndItsOrder() async throws {
        let fixture = try await ReplayFixture(rules: """
            rules:
              - { name: user, match: { entity: user }, delete: ["user:{id}"] }
              - { name: org, match: { entity: org }, delete: ["org:{tenant}:{id}"] }
            """)
        let count = 3_000
        func event(_ index: Int) -> String {
            switch index % 10 {
            case 3: #"{"entity":"user","id":"\#(index)""#  // cut short: invalid JSON
            case 7: #"{"entity":"org","id":"\#(index)","op":"update"}"#  // no tenant: unresolved placeholder
            default: #"{"entity":"user","id":"\#(index)","op":"update"}"#
            }
        }
        let good = (0..<count).filter { $0 % 10 != 3 && $0 % 10 != 7 }
        let bad = (0..<count).filter { $0 % 10 == 3 || $0 % 10 == 7 }
        try await seedKeys(fixture.cache[0], (0..<count).map { "user:\($0)" })

        try await fixture.process((0..<count).map(event))

        #expect(try existingKeys(fixture.cache[0], good.map { "user:\($0)" }) == 0)
        #expect(try existingKeys(fixture.cache[0], bad.map { "user:\($0)" }) == bad.count)
        let records = try await fixture.stored().map { try #require($0.record) }
        #expect(records.map { String(decoding: $0.event, as: UTF8.self) } == bad.map(event))
        #expect(records.map(\.reason) == bad.map { $0 % 10 == 3 ? .invalidJSON : .unresolvedPlaceholder })
    }
}
