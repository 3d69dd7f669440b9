// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "invalidator",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "invalidator", targets: ["invalidator"]),
        .library(name: "InvalidatorCore", targets: ["InvalidatorCore"]),
        // For the libFuzzer executables in Fuzz/, a package of their own.
        .library(name: "InvalidatorFuzzing", targets: ["InvalidatorFuzzing"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        // What AsyncHTTPClient builds on; named for the types its API takes (headers, TLS).
        .package(url: "https://github.com/apple/swift-nio", from: "2.100.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.30.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
    ],
    // Every target lists each module it imports.
    targets: [
        // C libraries, found through pkg-config.
        .systemLibrary(
            name: "CHiredis",
            pkgConfig: "hiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        .systemLibrary(
            name: "CRdKafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]
        ),
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        // glibc's malloc.h, for the worker's allocator settings.
        .systemLibrary(name: "CMalloc"),

        // Events, rules and planning: pure, no I/O, no C.
        .target(
            name: "InvalidatorCore",
            dependencies: [.product(name: "Yams", package: "Yams")]
        ),

        // The only code that calls hiredis and OpenSSL.
        .target(
            name: "InvalidatorRedis",
            dependencies: [
                "CHiredis",
                "COpenSSL",
                "InvalidatorCore",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // The only code that calls librdkafka.
        .target(
            name: "InvalidatorKafka",
            dependencies: [
                "CRdKafka",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // The only code that calls AsyncHTTPClient: webhook delivery.
        .target(
            name: "InvalidatorWebhooks",
            dependencies: [
                "InvalidatorCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),

        // Wires sources, planner, router, executor and dead letters. The webhook client
        // comes from the executable (`WebhookDelivering`), so neither this nor the fuzz
        // targets built on it link an HTTP stack.
        .target(
            name: "InvalidatorRuntime",
            dependencies: [
                "InvalidatorCore",
                "InvalidatorRedis",
                "InvalidatorKafka",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),

        .executableTarget(
            name: "invalidator",
            dependencies: [
                "CMalloc",
                "InvalidatorCore",
                "InvalidatorRedis",
                "InvalidatorKafka",
                "InvalidatorRuntime",
                "InvalidatorWebhooks",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),

        .executableTarget(
            name: "InvalidatorBenchmarks",
            dependencies: [
                "InvalidatorCore",
                "InvalidatorRedis",
                // For the certificates of the TLS run.
                "TestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // Fuzz targets: arbitrary bytes through the worker's per-event path and the loaders.
        .target(
            name: "InvalidatorFuzzing",
            dependencies: ["InvalidatorCore", "InvalidatorRedis", "InvalidatorRuntime"]
        ),

        // Starts real redis-server processes for tests, and a scripted HTTP server.
        .target(
            name: "TestSupport",
            dependencies: ["COpenSSL"],
            path: "Tests/TestSupport"
        ),

        // Test doubles for the runtime (a dead-letter store, a metrics factory, a log capture); starts nothing.
        .target(
            name: "TestDoubles",
            dependencies: [
                "InvalidatorRuntime",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/TestDoubles"
        ),

        // Need no server: InvalidatorCoreTests, InvalidatorUnitTests, InvalidatorFuzzingTests.
        .testTarget(
            name: "InvalidatorCoreTests",
            dependencies: [
                "InvalidatorCore",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            exclude: ["Golden"]
        ),
        .testTarget(
            name: "InvalidatorUnitTests",
            dependencies: [
                "InvalidatorCore",
                "InvalidatorRedis",
                "InvalidatorRuntime",
                "TestDoubles",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "InvalidatorFuzzingTests",
            dependencies: [
                "InvalidatorFuzzing",
                "InvalidatorCore",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),

        // Need redis-server (TestSupport starts it) or librdkafka's mock cluster.
        .testTarget(
            name: "InvalidatorRedisTests",
            dependencies: [
                "InvalidatorRedis",
                "InvalidatorCore",
                "TestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "InvalidatorRuntimeTests",
            dependencies: [
                "InvalidatorCore",
                "InvalidatorKafka",
                "InvalidatorRedis",
                "InvalidatorRuntime",
                "InvalidatorWebhooks",
                "TestDoubles",
                "TestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The fault suite: the real executable, real servers, one fault on purpose per scenario.
        .testTarget(
            name: "InvalidatorFaultTests",
            dependencies: [
                "InvalidatorKafka",
                "TestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Against TestSupport's HTTP server, plain and TLS (certificates made with openssl).
        .testTarget(
            name: "InvalidatorWebhookTests",
            dependencies: [
                "InvalidatorCore",
                "InvalidatorWebhooks",
                "TestDoubles",
                "TestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "InvalidatorKafkaTests",
            dependencies: [
                "InvalidatorKafka",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
