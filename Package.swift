// swift-tools-version:6.0
// unseg: unsupervised semantic segmentation on frozen self-supervised features.
//
// Layers (inner know nothing of outer):
//   C shims (CBLAS, CLAPACKE, CHDF5, CPNG)
//   UnsegLinAlg      Matrix, BLAS/LAPACK, seeded RNG, parallel-for, reductions (softmax, argmax), libm
//   UnsegCore        kernels shared by every method: k-means, resampling, label protocols, file names
//   UnsegHDF5        one owner per hid_t, errors from HDF5's stack, one global lock
//   UnsegStore       every file format: feature store, proposals, predictions, checkpoints (only
//                    this layer imports UnsegHDF5)
//   UnsegImaging     PNG via libpng's simplified API, palettes, canvas, charts
//   UnsegEvaluation  confusion, linear assignment, metrics
//   UnsegProposals   PriMaPs, spectral segments, median / guided filter / dense CRF
//   UnsegClustering  prototypes, fit stages (PCA init, cosine k-means, PriMaPs-EM)
//   UnsegSynthetic   the synthetic street-scene corpus (`unseg synth`, the demo)
//   UnsegPipeline    store-level jobs that the CLI subcommands call
//   unseg            the command-line tool
//   UnsegFixtures    planted inputs for tests and benchmarks (not a product)
import PackageDescription

let swiftSettings: [SwiftSetting] = []

let package = Package(
    name: "unseg",
    products: [
        .library(name: "Unseg", targets: [
            "UnsegLinAlg", "UnsegCore", "UnsegHDF5", "UnsegImaging", "UnsegStore",
            "UnsegEvaluation", "UnsegProposals", "UnsegClustering", "UnsegSynthetic", "UnsegPipeline",
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

        // Exact PNG sample reading (libpng's classic API, setjmp in C) for maps other tools wrote.
        .target(name: "CUnsegPNG", linkerSettings: [.linkedLibrary("png16")]),
        .target(name: "CUnsegKernels", cSettings: [.unsafeFlags(["-O3"])], linkerSettings: [.linkedLibrary("z")]),
        .target(name: "UnsegLinAlg", dependencies: ["CBLAS", "CLAPACKE", "CUnsegKernels"], swiftSettings: swiftSettings),
        // Open MPI through dlopen: linked against libdl only; MPI is loaded when mpirun starts unseg.
        .target(name: "CUnsegMPI", linkerSettings: [.linkedLibrary("dl")]),
        .target(name: "UnsegCore", dependencies: ["UnsegLinAlg", "CUnsegMPI", "CUnsegKernels"], swiftSettings: swiftSettings),
        .target(name: "UnsegHDF5", dependencies: ["CHDF5"], swiftSettings: swiftSettings),
        .target(name: "UnsegImaging", dependencies: ["CPNG", "CUnsegPNG", "UnsegLinAlg", "UnsegCore"], swiftSettings: swiftSettings),
        .target(name: "UnsegStore", dependencies: ["UnsegHDF5", "UnsegLinAlg", "UnsegCore", "CUnsegKernels"], swiftSettings: swiftSettings),
        .target(name: "UnsegEvaluation", dependencies: ["UnsegLinAlg", "UnsegCore"], swiftSettings: swiftSettings),
        .target(name: "UnsegProposals", dependencies: ["UnsegLinAlg", "UnsegCore", "CUnsegKernels"], swiftSettings: swiftSettings),
        .target(name: "UnsegClustering", dependencies: ["UnsegLinAlg", "UnsegCore", "CUnsegKernels"], swiftSettings: swiftSettings),
        .target(name: "UnsegSynthetic", dependencies: ["UnsegStore", "UnsegLinAlg", "UnsegCore"], swiftSettings: swiftSettings),
        .target(name: "UnsegPipeline",
                dependencies: ["UnsegLinAlg", "UnsegCore", "UnsegStore", "UnsegImaging",
                               "UnsegEvaluation", "UnsegProposals", "UnsegClustering", "UnsegSynthetic",
                               .product(name: "Yams", package: "Yams")],
                swiftSettings: swiftSettings),
        .target(name: "UnsegFixtures", dependencies: ["UnsegLinAlg", "UnsegCore", "UnsegProposals", "UnsegClustering"],
                swiftSettings: swiftSettings),
        .executableTarget(name: "UnsegCLI",
                          dependencies: ["UnsegPipeline",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          swiftSettings: swiftSettings),
        .executableTarget(name: "UnsegBench", dependencies: ["UnsegPipeline", "UnsegFixtures"], swiftSettings: swiftSettings),

        // Helpers shared by the test targets (Python cross-checks, planted stores); not a product.
        .target(name: "UnsegTestSupport", dependencies: ["UnsegStore", "UnsegLinAlg", "UnsegCore", "UnsegFixtures"],
                path: "Tests/UnsegTestSupport", swiftSettings: swiftSettings),
        .testTarget(name: "CShimTests", dependencies: ["CBLAS", "CLAPACKE", "CHDF5", "CPNG", "UnsegHDF5"]),
        .testTarget(name: "UnsegCoreTests", dependencies: ["UnsegCore", "UnsegLinAlg", "UnsegTestSupport"]),
        .testTarget(name: "UnsegLinAlgTests", dependencies: ["UnsegLinAlg", "UnsegCore", "UnsegTestSupport"]),
        .testTarget(name: "UnsegHDF5Tests", dependencies: ["UnsegHDF5"]),
        .testTarget(name: "UnsegImagingTests", dependencies: ["UnsegImaging", "UnsegCore", "UnsegTestSupport"]),
        .testTarget(name: "UnsegStoreTests", dependencies: ["UnsegStore", "UnsegSynthetic", "UnsegCore", "UnsegTestSupport"]),
        .testTarget(name: "UnsegEvaluationTests", dependencies: ["UnsegEvaluation", "UnsegCore", "UnsegTestSupport"]),
        .testTarget(name: "UnsegProposalsTests", dependencies: ["UnsegProposals", "UnsegCore", "UnsegFixtures", "UnsegStore", "CUnsegKernels", "UnsegTestSupport"]),
        .testTarget(name: "UnsegClusteringTests", dependencies: ["UnsegClustering", "UnsegCore", "UnsegFixtures", "UnsegTestSupport"]),
        .testTarget(name: "UnsegPipelineTests", dependencies: ["UnsegPipeline", "UnsegSynthetic", "UnsegCore", "UnsegClustering", "UnsegTestSupport"]),
        .testTarget(name: "UnsegCLITests", dependencies: ["UnsegPipeline", "UnsegSynthetic", "UnsegStore", "UnsegCore", "UnsegEvaluation", "UnsegTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
