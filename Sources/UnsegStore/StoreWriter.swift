import Foundation
import UnsegHDF5
import UnsegLinAlg
import UnsegCore

/// Options for writing a feature store.
public struct StoreWriteOptions: Sendable {
    /// `.float16` (half the bytes, what extraction tools write) or `.float32`.
    public var featureType: FeatureType = .float16
    /// gzip level (1...9) with the shuffle filter on every dataset, or nil for none.
    public var deflate: Int? = nil
    public var writeImages = true
    public var writeLabels = true
    public init(featureType: FeatureType = .float16, deflate: Int? = nil, writeImages: Bool = true, writeLabels: Bool = true) {
        self.featureType = featureType
        self.deflate = deflate
        self.writeImages = writeImages
        self.writeLabels = writeLabels
    }
}

/// Writes a new feature store (schema version 1) under a temporary name; `commit()`
/// renames it into place. Images are written one chunk each, in any order.
public final class FeatureStoreWriter {
    public let path: String
    public let count: Int, gridHeight: Int, gridWidth: Int, channels: Int
    public let imageHeight: Int, imageWidth: Int
    public let options: StoreWriteOptions
    private var output: AtomicHDF5File?
    private var features: HDF5Dataset?
    private var images: HDF5Dataset?
    private var labels: HDF5Dataset?
    private var names: [String]
    /// Object boxes (image index, x0, y0, x1, y1), written as `/boxes` `[M, 5]` float32 at commit.
    public var boxes: [[Float]] = []
    /// A peer's store (the layout `unseg-extract --head` writes): `/features_backbone` `[N, h, w, D]`
    /// of this width (0: none), filled by `write(_:backbone:)`, and `/peer_clusters` `[K, C]` written at
    /// commit when set.
    public let backboneChannels: Int
    public var peerClusters: Matrix?
    private var backbone: HDF5Dataset?
    /// Zoomed-in crops per image (`/features_crops` `[C, N, h, w, C]`, `/crop_boxes` `[C, N, 4]`), filled by
    /// `write(_:crops:)`; 0: none.
    public let cropCount: Int
    private var crops: HDF5Dataset?
    private var cropBoxes: [Float]
    private var halfScratch: [UInt16] = []

    public init(path: String, metadata: StoreMetadata, count: Int, gridHeight: Int, gridWidth: Int, channels: Int,
                options: StoreWriteOptions = StoreWriteOptions(), backboneChannels: Int = 0, cropCount: Int = 0,
                attributes: [(String, String)] = []) throws {
        self.path = path
        self.backboneChannels = backboneChannels
        self.cropCount = cropCount
        self.cropBoxes = [Float](repeating: 0, count: cropCount * count * 4)
        self.count = count
        self.gridHeight = gridHeight
        self.gridWidth = gridWidth
        self.channels = channels
        self.imageHeight = gridHeight * metadata.patchSize
        self.imageWidth = gridWidth * metadata.patchSize
        self.options = options
        self.names = (0..<count).map { String(format: "%06d", $0) }
        do {
            let out = try atomicHDF5Output(path)
            let f = out.file!
            try f.setAttribute("format", StoreMetadata.format)
            try f.setAttribute("version", StoreMetadata.version)
            try f.setAttribute("backbone", metadata.backbone)
            try f.setAttribute("patch_size", metadata.patchSize)
            try f.setAttribute("dataset", metadata.dataset)
            try f.setAttribute("split", metadata.split)
            if let p = metadata.labelProtocol { try f.setAttribute("protocol", p) }
            if let c = metadata.classNames { try f.setAttribute("class_names", c) }
            try f.setAttribute("label_ids", metadata.labelIDs.rawValue)
            for (k, v) in attributes { try f.setAttribute(k, v) }
            let shuffle = options.deflate != nil
            features = try f.createDataset("features", type: options.featureType.hdf5, shape: [count, gridHeight, gridWidth, channels],
                                            chunk: [1, gridHeight, gridWidth, channels], deflate: options.deflate, shuffle: shuffle)
            if backboneChannels > 0 {
                backbone = try f.createDataset("features_backbone", type: options.featureType.hdf5,
                                               shape: [count, gridHeight, gridWidth, backboneChannels],
                                               chunk: [1, gridHeight, gridWidth, backboneChannels], deflate: options.deflate, shuffle: shuffle)
            }
            if cropCount > 0 {
                crops = try f.createDataset("features_crops", type: options.featureType.hdf5,
                                            shape: [cropCount, count, gridHeight, gridWidth, channels],
                                            chunk: [1, 1, gridHeight, gridWidth, channels], deflate: options.deflate, shuffle: shuffle)
            }
            if options.writeImages {
                images = try f.createDataset("images", type: .uint8, shape: [count, imageHeight, imageWidth, 3],
                                             chunk: [1, imageHeight, imageWidth, 3], deflate: options.deflate, shuffle: false)
            }
            if options.writeLabels {
                labels = try f.createDataset("labels", type: .uint8, shape: [count, imageHeight, imageWidth],
                                             chunk: [1, imageHeight, imageWidth], deflate: options.deflate, shuffle: false)
            }
            output = out
        } catch let e as HDF5Error {
            throw StoreError(file: path, e.message)
        }
    }

    /// Writes image `i`: features `[h*w, C]`, optional RGB `[H*W*3]`, labels `[H*W]`, and its name;
    /// for a peer's store also the backbone's features `[h*w, D]`; with `cropCount` crops, each crop's
    /// features `[h*w, C]` and box.
    public func write(_ i: Int, features f: Matrix, image: [UInt8]?, labels l: [UInt8]?, name: String?, backbone b: Matrix? = nil,
                      crops c: [(features: Matrix, box: CropBox)] = []) throws {
        guard i >= 0 && i < count else { throw StoreError(file: path, "image index \(i) out of range 0..<\(count)") }
        guard f.rows == gridHeight * gridWidth && f.cols == channels else {
            throw StoreError(file: path, dataset: "/features",
                             "shape mismatch when writing: memory = [\(f.rows), \(f.cols)], destination = [\(gridHeight * gridWidth), \(channels)]")
        }
        guard (b == nil) == (backbone == nil), b.map({ $0.rows == gridHeight * gridWidth && $0.cols == backboneChannels }) ?? true else {
            throw StoreError(file: path, dataset: "/features_backbone", "backbone features \(b.map { "[\($0.rows), \($0.cols)]" } ?? "missing") for a store with \(backboneChannels) backbone channels")
        }
        guard c.count == cropCount, c.allSatisfy({ $0.features.rows == f.rows && $0.features.cols == channels }) else {
            throw StoreError(file: path, dataset: "/features_crops", "\(c.count) crops for a store with \(cropCount) crops per image of [\(f.rows), \(channels)]")
        }
        for (k, crop) in c.enumerated() {
            if let why = crop.box.problem(width: imageWidth, height: imageHeight, patch: imageWidth / gridWidth) {
                throw StoreError(file: path, dataset: "/crop_boxes", "crop \(k) of image \(i) is (x0 \(crop.box.x0), y0 \(crop.box.y0), x1 \(crop.box.x1), y1 \(crop.box.y1)): \(why); a reader would refuse it")
            }
        }
        do {
            try writeFeatures(f, to: features!, at: i)
            if let ds = backbone, let b { try writeFeatures(b, to: ds, at: i) }
            if let ds = crops {
                for (k, crop) in c.enumerated() {
                    try writeFeatures(crop.features, to: ds, at: i, leading: [k])
                    let o = (k * count + i) * 4
                    cropBoxes.replaceSubrange(o..<(o + 4), with: [crop.box.x0, crop.box.y0, crop.box.x1, crop.box.y1])
                }
            }
            if let ds = images, let img = image {
                try ds.write(img, start: [i, 0, 0, 0], count: [1, imageHeight, imageWidth, 3])
            }
            if let ds = labels, let lab = l {
                try ds.write(lab, start: [i, 0, 0], count: [1, imageHeight, imageWidth])
            }
        } catch let e as HDF5Error {
            throw StoreError(file: path, dataset: e.object, e.message)
        }
        if let n = name { names[i] = n }
    }

    private func writeFeatures(_ f: Matrix, to ds: HDF5Dataset, at i: Int, leading: [Int] = []) throws {
        let start = leading + [i, 0, 0, 0], cnt = leading.map { _ in 1 } + [1, gridHeight, gridWidth, f.cols]
        if options.featureType == .float16 {
            let n = f.count
            if halfScratch.count != n { halfScratch = [UInt16](repeating: 0, count: n) }
            f.data.withUnsafeBufferPointer { src in
                halfScratch.withUnsafeMutableBufferPointer { Half.fromFloat(src.baseAddress!, $0.baseAddress!, n) }
            }
            try halfScratch.withUnsafeBytes { try ds.write(from: $0.baseAddress!, memoryType: .float16, start: start, count: cnt) }
        } else {
            try f.data.withUnsafeBytes { try ds.write(from: $0.baseAddress!, memoryType: .float32, start: start, count: cnt) }
        }
    }

    /// Writes `/names`, flushes, and renames the file into place.
    public func commit() throws {
        guard let out = output else { return }
        do {
            try out.file!.createStringDataset("names", values: names)
            if !boxes.isEmpty {
                let d = try out.file!.createDataset("boxes", type: .float32, shape: [boxes.count, 5])
                try d.write(boxes.flatMap { $0 })
            }
            if cropCount > 0 {
                let d = try out.file!.createDataset("crop_boxes", type: .float32, shape: [cropCount, count, 4])
                try d.write(cropBoxes)
            }
            if let m = peerClusters {
                let d = try out.file!.createDataset("peer_clusters", type: .float32, shape: [m.rows, m.cols])
                try d.write(m.data)
            }
            features = nil; images = nil; labels = nil; backbone = nil; crops = nil
            try out.commit()
            Temporaries.unregister(out.temporaryPath)
        } catch let e as HDF5Error {
            throw StoreError(file: path, e.message)
        }
        output = nil
    }

    /// Abandons the output (the temporary file is removed).
    public func discard() {
        features = nil; images = nil; labels = nil; backbone = nil; crops = nil
        output?.discard()
        output = nil
    }
}
