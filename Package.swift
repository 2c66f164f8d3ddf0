// swift-tools-version:6.1
import PackageDescription

/// Strict Swift 6 everywhere; `ExistentialAny` keeps protocol seams visible at use sites.
let swiftSettings: [SwiftSetting] = [
  .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
  name: "OneWindow",
  platforms: [.macOS(.v15)],
  products: [
    .executable(name: "onewindow", targets: ["onewindow"]),
    .executable(name: "owctl", targets: ["owctl"]),
    .executable(name: "owbench", targets: ["owbench"]),
    .library(name: "OneWindowClient", targets: ["OneWindowClient"]),
    .library(name: "OneWindowClientPosix", targets: ["OneWindowClientPosix"]),
  ],
  dependencies: [
    .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
    .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
    .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
    .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
    .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
    .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
    .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
    .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
    .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
    .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
    .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
    // FullFoundation only: the ConfigurationSupport trait would compile swift-configuration, unused here.
    .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: ["FullFoundation"]),
    .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
    .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
    .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
  ],
  targets: [
    // Generated protobuf messages and gRPC stubs (Tools/generate-protos); committed, never built by a plugin.
    .target(
      name: "OneWindowAPI",
      dependencies: [
        "OneWindowCore",
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
      ],
      swiftSettings: swiftSettings
    ),
    // Pure domain rules and value types: no I/O, no gRPC, no SQL.
    .target(
      name: "OneWindowCore",
      dependencies: [
        .product(name: "Crypto", package: "swift-crypto"),
        .product(name: "_CryptoExtras", package: "swift-crypto"),
      ],
      swiftSettings: swiftSettings
    ),
    // Persistence behind protocols: the store seams and their value types, no engine.
    .target(
      name: "OneWindowStore",
      dependencies: ["OneWindowCore"],
      swiftSettings: swiftSettings
    ),
    // The embedded default engine: SQLite through GRDB.
    .target(
      name: "OneWindowStoreSQLite",
      dependencies: [
        "OneWindowCore", "OneWindowStore",
        .product(name: "GRDB", package: "GRDB.swift"),
      ],
      swiftSettings: swiftSettings
    ),
    // The scale-out engine: PostgreSQL through postgres-nio.
    .target(
      name: "OneWindowStorePostgres",
      dependencies: [
        "OneWindowCore", "OneWindowStore",
        .product(name: "PostgresNIO", package: "postgres-nio"),
        .product(name: "NIOSSL", package: "swift-nio-ssl"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "Metrics", package: "swift-metrics"),
      ],
      swiftSettings: swiftSettings
    ),
    // Picks and opens the engine a deployment chose; nothing above it names an engine.
    .target(
      name: "OneWindowDatabase",
      dependencies: [
        "OneWindowStore", "OneWindowStoreSQLite", "OneWindowStorePostgres",
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: swiftSettings
    ),
    // zlib (Debian's zlib1g-dev), to tell an oversize compressed request from a corrupt one.
    .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
    // gRPC services, interceptors, configuration and the server's lifecycle.
    .target(
      name: "OneWindowServer",
      dependencies: [
        "OneWindowAPI", "OneWindowCore", "OneWindowStore", "OneWindowDatabase",
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
        .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "NIOHTTP2", package: "swift-nio-http2"),
        .product(name: "NIOHPACK", package: "swift-nio-http2"),
        .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
        .product(name: "HummingbirdCore", package: "hummingbird"),
        "CZlib",
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "AsyncHTTPClient", package: "async-http-client"),
        .product(name: "Crypto", package: "swift-crypto"),
        .product(name: "Hummingbird", package: "hummingbird"),
        .product(name: "HTTPTypes", package: "swift-http-types"),
        .product(name: "Metrics", package: "swift-metrics"),
        .product(name: "Prometheus", package: "swift-prometheus"),
      ],
      resources: [.copy("Resources/demo-catalog.json")],
      swiftSettings: swiftSettings
    ),
    // The client SDK an app embeds: credentials, the sync engine and its local replica. Generic
    // over the gRPC transport (no NIO Posix), so an iOS app can use another one.
    .target(
      name: "OneWindowClient",
      dependencies: [
        "OneWindowAPI", "OneWindowCore",
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "GRDB", package: "GRDB.swift"),
      ],
      swiftSettings: swiftSettings
    ),
    // Connecting over the HTTP/2 Posix transport (Linux, macOS command-line tools): owctl, owbench, tests.
    .target(
      name: "OneWindowClientPosix",
      dependencies: [
        "OneWindowClient", "OneWindowAPI",
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
      ],
      swiftSettings: swiftSettings
    ),
    .executableTarget(
      name: "onewindow",
      dependencies: [
        "OneWindowServer", "OneWindowDatabase", "OneWindowStore", "OneWindowCore",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: swiftSettings
    ),
    .executableTarget(
      name: "owctl",
      dependencies: [
        "OneWindowClient", "OneWindowClientPosix", "OneWindowAPI", "OneWindowCore",
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Yams", package: "Yams"),
        .product(name: "Crypto", package: "swift-crypto"),
        .product(name: "AsyncHTTPClient", package: "async-http-client"),
      ],
      swiftSettings: swiftSettings
    ),
    .executableTarget(
      name: "owbench",
      dependencies: [
        "OneWindowClient", "OneWindowClientPosix", "OneWindowAPI", "OneWindowCore",
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Histogram", package: "hdrhistogram-swift"),
        .product(name: "AsyncHTTPClient", package: "async-http-client"),
      ],
      swiftSettings: swiftSettings
    ),
    // Shared by the test targets: fresh databases of each engine.
    .target(
      name: "OneWindowTestSupport",
      dependencies: [
        "OneWindowDatabase", "OneWindowStore", "OneWindowStorePostgres",
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "OneWindowCoreTests",
      dependencies: [
        "OneWindowCore", .product(name: "PropertyBased", package: "swift-property-based"),
        .product(name: "Crypto", package: "swift-crypto"),
      ],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "OneWindowStoreTests",
      dependencies: [
        "OneWindowStore", "OneWindowCore", "OneWindowTestSupport",
        .product(name: "PropertyBased", package: "swift-property-based"),
      ],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "OneWindowStoreSQLiteTests",
      dependencies: [
        "OneWindowStore", "OneWindowStoreSQLite", "OneWindowCore",
        .product(name: "GRDB", package: "GRDB.swift"),
        .product(name: "PropertyBased", package: "swift-property-based"),
      ],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "OneWindowStorePostgresTests",
      dependencies: [
        "OneWindowStore", "OneWindowStorePostgres", "OneWindowDatabase", "OneWindowTestSupport",
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "OneWindowClientTests",
      dependencies: [
        "OneWindowClient", "OneWindowCore", "OneWindowAPI",
        .product(name: "GRDB", package: "GRDB.swift"),
      ],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "OneWindowServerTests",
      dependencies: [
        "OneWindowServer", "OneWindowClient", "OneWindowClientPosix", "OneWindowAPI", "OneWindowStore", "OneWindowCore",
        "OneWindowDatabase", "OneWindowTestSupport",
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "AsyncHTTPClient", package: "async-http-client"),
        .product(name: "Prometheus", package: "swift-prometheus"),
        .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        .product(name: "NIOCore", package: "swift-nio"),
      ],
      swiftSettings: swiftSettings
    ),
  ]
)
