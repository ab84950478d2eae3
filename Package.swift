// swift-tools-version:6.0
// Thaw: a distributed transfer-learning trainer.
// Targets are split by role; see docs/design.md for how they depend on each other.
import PackageDescription

/// Numeric targets: no errno path for sqrt/exp in imported C math, so loops over unsafe buffers vectorize.
let fastMath: [SwiftSetting] = [.unsafeFlags(["-Xcc", "-fno-math-errno"])]

let package = Package(
    name: "Thaw",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "ThawKernels", targets: ["ThawKernels"]),
        .library(name: "ThawNN", targets: ["ThawNN"]),
        .library(name: "ThawData", targets: ["ThawData"]),
        .library(name: "ThawOptim", targets: ["ThawOptim"]),
        .library(name: "ThawCollective", targets: ["ThawCollective"]),
        .library(name: "ThawPlan", targets: ["ThawPlan"]),
        .library(name: "ThawCoordinator", targets: ["ThawCoordinator"]),
        .library(name: "ThawTrainer", targets: ["ThawTrainer"]),
        .library(name: "ThawRun", targets: ["ThawRun"]),
        .library(name: "ThawEvaluation", targets: ["ThawEvaluation"]),
        .library(name: "ThawBench", targets: ["ThawBench"]),
        .library(name: "ThawTesting", targets: ["ThawTesting"]),
        .executable(name: "thaw", targets: ["thaw"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        // HMAC-SHA256 for the workers' job secret (ThawCoordinator/JobSecret.swift).
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        // The coordinator's /metrics endpoint (ThawMetrics) and operational log lines.
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // C system libraries. OpenMPI's handles are macros, so CMPI's header adds accessors.
        .systemLibrary(name: "CMPI", pkgConfig: "ompi", providers: [.apt(["libopenmpi-dev"])]),
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZMQ", pkgConfig: "libzmq", providers: [.apt(["libzmq3-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // oneDNN 2.6 (OpenMP build) has no pkg-config file; its header is in the default include path.
        .systemLibrary(name: "CDNNL", providers: [.apt(["libdnnl-dev"])]),

        // Tensor kernels on OpenBLAS (and oneDNN's convolutions): no knowledge of layers, MPI or ZeroMQ.
        .target(name: "ThawKernels", dependencies: ["CBLAS", "CDNNL"], swiftSettings: fastMath),
        // Layers with explicit forward/backward, the flat parameter store, models as named groups.
        .target(name: "ThawNN", dependencies: ["ThawKernels"], swiftSettings: fastMath),
        // Datasets, file readers (IDX, NPY, CSV), sharded sampling.
        .target(name: "ThawData", dependencies: ["CZlib", "ThawKernels"], swiftSettings: fastMath),
        // Optimizers and learning-rate schedules over the flat buffers.
        .target(name: "ThawOptim", dependencies: ["ThawNN"], swiftSettings: fastMath),
        // The Collective protocol, its MPI implementation and an in-process one.
        .target(name: "ThawCollective", dependencies: ["CMPI"]),
        // The plan of a run and the words ranks and the coordinator exchange about it: the versioned
        // `TrainingPlan`, the unfreezing planner, the wire messages, strict decoding. No dependencies.
        .target(name: "ThawPlan"),
        // The coordinator: its server, its clients, worker authentication and the ZeroMQ transport.
        .target(name: "ThawCoordinator", dependencies: ["ThawPlan", "CZMQ", .product(name: "Crypto", package: "swift-crypto")]),
        // Operators' views of a coordinator: its status as Prometheus metrics served over HTTP, and its events as swift-log lines.
        .target(name: "ThawMetrics", dependencies: ["ThawPlan", "ThawCoordinator", .product(name: "Prometheus", package: "swift-prometheus"),
                                                   .product(name: "Logging", package: "swift-log")]),
        // The training core: the trainer's straight line, plan agreement, batch sources and the
        // frozen-prefix cache, objectives, gradient exchange, early stopping, checkpoints, run observers.
        .target(
            name: "ThawTrainer",
            dependencies: ["ThawNN", "ThawData", "ThawOptim", "ThawCollective", "ThawPlan"],
            swiftSettings: fastMath),
        // A run: configuration, model zoo, dataset catalogue, and `TrainingRun`, which builds the
        // trainer's parts and observers (console, metrics file, coordinator) from the configuration.
        .target(
            name: "ThawRun",
            dependencies: [
                "ThawTrainer", "ThawNN", "ThawData", "ThawOptim", "ThawCollective", "ThawPlan", "ThawCoordinator",
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: fastMath),
        // Tools that judge a model: few-shot episodes, classification reports, predictions, the
        // negative-transfer comparison, run reports.
        .target(name: "ThawEvaluation", dependencies: ["ThawRun", "ThawTrainer", "ThawNN", "ThawData", "ThawOptim", "ThawCollective", "ThawPlan"],
                swiftSettings: fastMath),
        // Benchmarks, measured as ratios against raw OpenBLAS and raw MPI in the same run.
        .target(name: "ThawBench",
                dependencies: ["ThawRun", "ThawTrainer", "ThawNN", "ThawData", "ThawKernels", "ThawCollective", "ThawPlan", "ThawCoordinator",
                               "ThawProcesses", "CMPI"],
                swiftSettings: fastMath),
        // Process groups with a hang guard (mpirun jobs, coordinators), for tests and benchmarks.
        .target(name: "ThawProcesses"),
        // Oracles for tests of layers: finite-difference gradient checks and reference fixtures.
        .target(name: "ThawTesting", dependencies: ["ThawNN", "ThawProcesses"]),
        // The one executable, with subcommands.
        .executableTarget(
            name: "thaw",
            dependencies: [
                "ThawTrainer", "ThawRun", "ThawEvaluation", "ThawBench", "ThawPlan", "ThawCoordinator", "ThawMetrics",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        .testTarget(name: "ThawKernelsTests", dependencies: ["ThawKernels", "ThawTesting"]),
        .testTarget(name: "ThawNNTests", dependencies: ["ThawNN", "ThawTesting"]),
        .testTarget(name: "ThawDataTests", dependencies: ["ThawData", "ThawKernels", "ThawTesting"]),
        .testTarget(name: "ThawOptimTests", dependencies: ["ThawOptim", "ThawTesting"]),
        .testTarget(name: "ThawCollectiveTests", dependencies: ["ThawCollective", "ThawTesting"]),
        // The coordinator's protocol handler and worker authentication, without sockets or processes.
        .testTarget(name: "ThawCoordinatorTests", dependencies: ["ThawPlan", "ThawCoordinator"]),
        .testTarget(name: "ThawTrainerTests",
                    dependencies: ["ThawTrainer", "ThawRun", "ThawEvaluation", "ThawBench", "ThawPlan", "ThawCoordinator", "ThawMetrics", "ThawTesting", "thaw",
                                   .product(name: "Logging", package: "swift-log")]),
    ]
)
