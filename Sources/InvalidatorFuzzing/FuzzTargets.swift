/// The fuzz targets: arbitrary bytes through one path of the worker each. A trap
/// is a finding (libFuzzer reports it); the strings returned are invariants that
/// did not hold, which the fuzz executables turn into a trap as well.
///
/// The executables in `Fuzz/` call these for libFuzzer, and a unit test runs every
/// file of `Fuzz/corpus` through them, so each finding stays a regression test.
public enum FuzzTargets {
    public enum Target: String, CaseIterable, Sendable {
        /// One message through decode, plan, metrics, dead-letter encoding and replay decoding.
        case event
        /// A rules file through the rules loader, and the rules it yields through the planner.
        case rules
        /// A config file (and environment overrides) through the config loader.
        case configuration
    }

    public static func run(_ target: Target, _ data: [UInt8]) -> [String] {
        switch target {
        case .event: EventFuzzTarget.run(data)
        case .rules: RulesFuzzTarget.run(data)
        case .configuration: ConfigurationFuzzTarget.run(data)
        }
    }
}
