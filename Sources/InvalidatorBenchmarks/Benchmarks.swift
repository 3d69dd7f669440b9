/// `swift run -c release InvalidatorBenchmarks [decode]`
@main
enum Benchmarks {
    static func main() throws {
        let arguments = Array(CommandLine.arguments.dropFirst())
        let which = arguments.first ?? "decode"
        switch which {
        case "decode":
            try DecodeBenchmark.run(count: Int(arguments.dropFirst().first ?? "") ?? 200_000, rounds: 5)
        default:
            print("usage: InvalidatorBenchmarks [decode]")
        }
    }
}
