import CLibFuzzer
import Foundation
import InvalidatorFuzzing

/// The target this process fuzzes, from `INVALIDATOR_FUZZ_TARGET` (event, rules or configuration).
let target: FuzzTargets.Target = {
    let name = ProcessInfo.processInfo.environment["INVALIDATOR_FUZZ_TARGET"] ?? "event"
    guard let target = FuzzTargets.Target(rawValue: name) else {
        fatalError("INVALIDATOR_FUZZ_TARGET must be one of \(FuzzTargets.Target.allCases.map(\.rawValue))")
    }
    return target
}()

/// One input. A broken invariant is reported as a crash, like a trap.
func fuzzOneInput(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let data = start.map { Array(UnsafeBufferPointer(start: $0, count: count)) } ?? []
    let problems = FuzzTargets.run(target, data)
    if !problems.isEmpty {
        fatalError("invariant broken: \(problems.joined(separator: "; "))")
    }
    return 0
}

/// The executable's entry point under SwiftPM's name for it (built with
/// `-parse-as-library`, so Swift generates no `main` of its own).
@_cdecl("InvalidatorFuzz_main")
func runFuzzer(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments) { fuzzOneInput($0, $1) }
}
