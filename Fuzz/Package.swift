// swift-tools-version: 6.1
// The libFuzzer executable, a package of its own because it is built with
// `-sanitize=fuzzer,address -parse-as-library`: see scripts/fuzz.
import PackageDescription

let package = Package(
    name: "invalidator-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "invalidator", path: "..")],
    targets: [
        .systemLibrary(name: "CLibFuzzer"),
        .executableTarget(
            name: "InvalidatorFuzz",
            dependencies: ["CLibFuzzer", .product(name: "InvalidatorFuzzing", package: "invalidator")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
