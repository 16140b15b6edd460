// swift-tools-version:6.0
import PackageDescription

/// Settings every Swift target shares: Swift 6 language mode is the package default;
/// these add the upcoming features we rely on.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "druid-sync",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "druid-sync", targets: ["druid-sync"])
    ],
    targets: [
        // C libraries from Debian, one module map each.
        .systemLibrary(
            name: "CRabbitMQ", path: "Sources/CRabbitMQ", pkgConfig: "librabbitmq",
            providers: [.apt(["librabbitmq-dev"])]),
        .systemLibrary(
            name: "COpenSSL", path: "Sources/COpenSSL", pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]),
        .systemLibrary(
            name: "CCurl", path: "Sources/CCurl", pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(
            name: "CSystemd", path: "Sources/CSystemd", pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]),
        // The allocator: libcurl and the Swift runtime allocate several times per request,
        // and mimalloc does it for much less CPU than glibc's malloc (bench/README.md).
        .systemLibrary(
            name: "CMimalloc", path: "Sources/CMimalloc", providers: [.apt(["libmimalloc-dev"])]),

        // A lock ThreadSanitizer can see through, shared by the threaded modules.
        .target(name: "Locking", swiftSettings: swiftSettings),
        // The domain: pure values and functions, no C, no I/O.
        .target(name: "UserUpdates", swiftSettings: swiftSettings),
        // Swift wrappers of the C libraries.
        .target(name: "AMQP", dependencies: ["CRabbitMQ", "Locking"], swiftSettings: swiftSettings),
        .target(name: "HTTPClient", dependencies: ["CCurl", "Locking"], swiftSettings: swiftSettings),
        .target(
            name: "Druid", dependencies: ["COpenSSL", "HTTPClient", "Locking", "UserUpdates"],
            swiftSettings: swiftSettings),
        // The service: consume, call DRUID, settle.
        .target(
            name: "DruidSync",
            dependencies: ["AMQP", "HTTPClient", "Druid", "UserUpdates", "CSystemd", "CMimalloc", "Locking"],
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "druid-sync", dependencies: ["DruidSync"], swiftSettings: swiftSettings),

        .testTarget(name: "UserUpdatesTests", dependencies: ["UserUpdates"], swiftSettings: swiftSettings),
        .testTarget(name: "AMQPTests", dependencies: ["AMQP"], swiftSettings: swiftSettings),
        .testTarget(
            name: "DruidTests", dependencies: ["Druid", "HTTPClient", "UserUpdates"], swiftSettings: swiftSettings),
        .testTarget(name: "DruidSyncTests", dependencies: ["DruidSync"], swiftSettings: swiftSettings),
        .testTarget(
            name: "IntegrationTests", dependencies: ["AMQP", "DruidSync", "UserUpdates"],
            swiftSettings: swiftSettings),
    ]
)
