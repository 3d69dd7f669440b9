/// `swift run -c release InvalidatorBenchmarks decode|redis|patterns [count]`
@main
enum Benchmarks {
    static func main() async throws {
        let arguments = Array(CommandLine.arguments.dropFirst())
        let count = arguments.dropFirst().first.flatMap { Int($0) }
        switch arguments.first ?? "decode" {
        case "decode":
            try DecodeBenchmark.run(count: count ?? 200_000, rounds: 5)
        case "redis":
            try await RedisBenchmark.run(keys: count ?? 1_000_000, batch: 10_000)
        case "patterns":
            try await PatternBenchmark.run(ids: count ?? 2_000, keysPerID: 50, rounds: 3)
        default:
            print("usage: InvalidatorBenchmarks decode|redis|patterns [count]")
        }
    }
}
