import Foundation
import InvalidatorFuzzing
import Testing

/// Every input of the fuzz corpus (seeds and past findings) through its target:
/// what the fuzzer once found stays fixed, without building with sanitizers.
@Suite struct FuzzCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/corpus")

    @Test(arguments: FuzzTargets.Target.allCases)
    func everyCorpusInputHolds(_ target: FuzzTargets.Target) throws {
        let directory = Self.corpus.appendingPathComponent(target.rawValue)
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        #expect(files.count >= 10, "the \(target.rawValue) corpus is missing")
        for file in files {
            let data = try Data(contentsOf: directory.appendingPathComponent(file))
            let problems = FuzzTargets.run(target, Array(data))
            #expect(problems.isEmpty, "\(target.rawValue)/\(file): \(problems)")
        }
    }
}

/// Payloads of about 5 MB, too large for the corpus files: each is refused or
/// planned, without a trap and in linear time.
@Suite struct LargePayloadTests {
    static let fiveMegabytes = 5 * 1024 * 1024

    /// `mode` 0x01 reads the rest as a native event from Kafka (see EventFuzzTarget.Mode).
    static func run(_ json: String) -> [String] {
        FuzzTargets.run(.event, [0x01] + Array(json.utf8))
    }

    @Test func aFiveMegabyteIDIsRefusedAsTooLongAKey() {
        let id = String(repeating: "x", count: Self.fiveMegabytes)
        #expect(Self.run(#"{"entity":"user","id":"\#(id)","op":"update","tenant":"t","changed":["email"]}"#).isEmpty)
    }

    @Test func fiveMegabytesOfIDsAreRefused() {
        let ids = (0..<700_000).map { "\"\($0)\"" }.joined(separator: ",")
        #expect(ids.utf8.count > Self.fiveMegabytes)
        #expect(Self.run(#"{"entity":"product","ids":[\#(ids)],"op":"delete"}"#).isEmpty)
    }

    @Test func fiveMegabyteRowsAreComparedInLinearTime() {
        let fields = (0..<250_000).map { "\"f\($0)\":\($0)" }.joined(separator: ",")
        #expect(fields.utf8.count * 2 > Self.fiveMegabytes)
        let clock = ContinuousClock()
        let elapsed = clock.measure {
            #expect(Self.run(#"{"entity":"user","id":"1","op":"update","tenant":"t","before":{\#(fields)},"after":{\#(fields),"email":"x"}}"#).isEmpty)
        }
        // Quadratic comparison took minutes; linear takes well under a second even in a debug build.
        #expect(elapsed < .seconds(30))
    }

    @Test func deepNestingIsRefusedWithoutExhaustingTheStack() {
        let depth = 1_000_000
        let nested = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
        #expect(Self.run(#"{"entity":"user","id":"1","op":"update","attributes":\#(nested)}"#).isEmpty)
    }
}
