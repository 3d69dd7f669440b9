import Foundation
import InvalidatorCore
import Testing

@testable import InvalidatorRuntime

/// Dead letters that carry notify and webhook work read back exactly as written,
/// and the schema's examples of them are what the code writes.
@Suite struct SecondLayerRecordTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func example(_ name: String) throws -> String {
        try String(contentsOf: Self.repository.appendingPathComponent("schemas/examples/\(name)"), encoding: .utf8)
    }

    @Test(arguments: ["dead-letter.delivery-failed.json", "dead-letter.second-layer-waiting.json"])
    func theSchemaExamplesAreWhatTheCodeWrites(_ name: String) throws {
        let text = try example(name)
        let record = try DeadLetter(jsonText: text)
        #expect(record.json == (try JSONParser.parse(bytes: Array(text.utf8))))
    }

    @Test func aDeliveryFailedRecordKeepsItsTargetAndItems() throws {
        let record = try DeadLetter(jsonText: try example("dead-letter.delivery-failed.json"))
        #expect(record.reason == .deliveryFailed)
        #expect(record.target == "cdn")
        #expect(record.webhooks == [WebhookItem(target: "cdn", body: .object(["tags": .array([.string("product-42"), .string("product-43")])]), rule: "product-pages")])
        #expect(record.pending == nil)
    }

    @Test func waitingWorkReadsBackAsPublishOperationsAndItems() throws {
        let record = try DeadLetter(jsonText: try example("dead-letter.second-layer-waiting.json"))
        let pending = try #require(record.pending)
        #expect(pending.notifications == [PoolPlan(pool: "primary", operations: [PlannedOperation(
            .publish(PublishMessage(channel: "cache:invalidate", message: #"{"pattern":"user:acme:123","tenantId":"acme"}"#)),
            rule: "user-profile")])])
        #expect(pending.webhooks.map(\.target) == ["cdn"])
    }

    @Test(arguments: [
        #""after": {"notifications": [{"pool": "primary"}]}"#,
        #""after": {"notifications": [{"pool": "p", "operations": [{"kind": "notify", "rule": "r"}]}]}"#,
        #""after": {"webhooks": [{"target": "cdn"}]}"#,
        #""after": []"#,
        #""target": "cdn", "webhooks": [{"rule": "r", "body": {}}]"#,
    ])
    func aMangledSecondLayerPartMakesTheRecordUnreadableNotHalfRead(_ part: String) throws {
        let text = #"""
            {"version": 1, "event": "{}", "source": {"kind": "manual"}, "reason": "operation-failed",
             "error": {"class": "c", "message": "m"}, "operations": [], "attempts": 1,
             "first_failed_at": "2026-01-01T00:00:00Z", "last_failed_at": "2026-01-01T00:00:00Z", \#(part)}
            """#
        #expect(throws: DeadLetterDecodingError.self) { try DeadLetter(jsonText: text) }
    }
}
