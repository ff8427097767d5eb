// swift-tools-version:6.0
// unseg: unsupervised semantic segmentation on frozen self-supervised features.
//
// Layers (inner know nothing of outer):
//   C shims (CBLAS, CLAPACKE, CHDF5, CPNG)
//   UnsegLinAlg      Matrix, BLAS/LAPACK, seeded RNG, parallel-for
//   UnsegHDF5        one owner per hid_t, errors from HDF5's stack, one global lock
//   UnsegImaging     PNG via libpng's simplified API, palettes, canvas, charts
//   UnsegStore       feature-store schema, streaming reader, atomic writers, synthetic corpus
//   UnsegEvaluation  confusion, linear assignment, metrics, label protocols
//   UnsegProposals   PriMaPs, spectral segments, median / guided filter / dense CRF
//   UnsegClustering  k-means, prototypes, PriMaPs-EM
//   UnsegPipeline    store-level jobs that the CLI subcommands call
//   unseg            the command-line tool
import PackageDescription

let swiftSettings: [SwiftSetting] = []

let package = Package(
    name: "unseg",
    products: [
        .library(name: "Unseg", targets: [
            "UnsegLinAlg", "UnsegHDF5", "UnsegImaging", "UnsegStore",
            "UnsegEvaluation", "UnsegProposals", "UnsegClustering", "UnsegPipeline",
        ]),
        .executable(name: "unseg", targets: ["UnsegCLI"]),
        .executable(name: "unseg-bench", targets: ["UnsegBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CLAPACKE", pkgConfig: "lapacke",
                       providers: [.apt(["liblapacke-dev"])]),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5-serial",
                       providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"])]),

        .target(name: "CUnsegKernels", cSettings: [.unsafeFlags(["-O3"])]),
        .target(name: "UnsegLinAlg", dependencies: ["CBLAS", "CLAPACKE", "CUnsegKernels"], swiftSettings: swiftSettings),
        .target(name: "UnsegHDF5", dependencies: ["CHDF5"], swiftSettings: swiftSettings),
        .target(name: "UnsegImaging", dependencies: ["CPNG", "UnsegLinAlg"], swiftSettings: swiftSettings),
        .target(name: "UnsegStore", dependencies: ["UnsegHDF5", "UnsegLinAlg"], swiftSettings: swiftSettings),
        .target(name: "UnsegEvaluation", dependencies: ["UnsegLinAlg"], swiftSettings: swiftSettings),
        .target(name: "UnsegProposals", dependencies: ["UnsegLinAlg"], swiftSettings: swiftSettings),
        .target(name: "UnsegClustering", dependencies: ["UnsegLinAlg"], swiftSettings: swiftSettings),
        .target(name: "UnsegPipeline",
                dependencies: ["UnsegLinAlg", "UnsegHDF5", "UnsegStore", "UnsegImaging",
                               "UnsegEvaluation", "UnsegProposals", "UnsegClustering",
                               .product(name: "Yams", package: "Yams")],
                swiftSettings: swiftSettings),
        .executableTarget(name: "UnsegCLI",
                          dependencies: ["UnsegPipeline",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          swiftSettings: swiftSettings),
        .executableTarget(name: "UnsegBench", dependencies: ["UnsegPipeline"], swiftSettings: swiftSettings),

        // Helpers shared by the test targets (Python cross-checks, planted stores); not a product.
        .target(name: "UnsegTestSupport", dependencies: ["UnsegStore", "UnsegLinAlg"], path: "Tests/UnsegTestSupport"),
        .testTarget(name: "CShimTests", dependencies: ["CBLAS", "CLAPACKE", "CHDF5", "CPNG", "UnsegHDF5"]),
        .testTarget(name: "UnsegLinAlgTests", dependencies: ["UnsegLinAlg"]),
        .testTarget(name: "UnsegHDF5Tests", dependencies: ["UnsegHDF5"]),
        .testTarget(name: "UnsegImagingTests", dependencies: ["UnsegImaging"]),
        .testTarget(name: "UnsegStoreTests", dependencies: ["UnsegStore", "UnsegTestSupport"]),
        .testTarget(name: "UnsegEvaluationTests", dependencies: ["UnsegEvaluation", "UnsegTestSupport"]),
        .testTarget(name: "UnsegProposalsTests", dependencies: ["UnsegProposals", "UnsegTestSupport"]),
        .testTarget(name: "UnsegClusteringTests", dependencies: ["UnsegClustering"]),
        .testTarget(name: "UnsegPipelineTests", dependencies: ["UnsegPipeline", "UnsegTestSupport"]),
        .testTarget(name: "UnsegCLITests", dependencies: ["UnsegPipeline", "UnsegTestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
