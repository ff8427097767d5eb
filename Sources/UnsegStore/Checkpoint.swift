import Foundation
import UnsegCore
import UnsegHDF5

/// One validated epoch of a fit.
public struct CheckpointValRecord: Sendable, Equatable {
    public var stage: String
    public var epoch: Int
    public var miou: Double
    public var accuracy: Double
    public init(stage: String, epoch: Int, miou: Double, accuracy: Double) {
        self.stage = stage; self.epoch = epoch; self.miou = miou; self.accuracy = accuracy
    }
}

/// The checkpoint file format (`unseg.checkpoint`, version 2): where a fit stands, plus a generic
/// container of the saved state of every stage.
///
/// Root attributes hold the run's position and provenance (`recipe`, `stage`, `step`, `epoch`,
/// `batch_in_epoch`, `store`, ...); `/stages/<name>/...` holds each stage's `StateRecord` (scalars
/// as attributes of the group, arrays as datasets); `/history/...` the validation history;
/// `/best/...` the best prototypes. Written under a temporary name and renamed; read back
/// exactly (bit-identical arrays). Described in Checkpoints/README.md.
public struct CheckpointFile: Sendable, Equatable {
    public static let format = "unseg.checkpoint"
    public static let version = 2

    /// The recipe's YAML.
    public var recipe: String
    /// The stage running now, nil when the fit is finished (`done` in the file).
    public var stage: String?
    public var step: Int
    public var epoch: Int
    public var batchInEpoch: Int
    /// The training store: path, image count and feature shape `[h, w, C]`.
    public var storePath: String
    public var storeImages: Int
    public var featureShape: [Int]
    /// Prototypes K, when known.
    public var classes: Int?
    /// The checkpoint the run started from (`--init-from`).
    public var initFrom: String?
    /// The saved state of every stage that has started, in stage order.
    public var stages: [(name: String, state: StateRecord)]
    /// Validation metrics per epoch.
    public var validation: [CheckpointValRecord]
    /// The best validation epoch and its prototypes' state.
    public var best: (record: CheckpointValRecord, state: StateRecord)?

    public init(recipe: String, stage: String?, step: Int, epoch: Int, batchInEpoch: Int, storePath: String,
                storeImages: Int, featureShape: [Int], classes: Int? = nil, initFrom: String? = nil,
                stages: [(name: String, state: StateRecord)], validation: [CheckpointValRecord] = [],
                best: (record: CheckpointValRecord, state: StateRecord)? = nil) {
        self.recipe = recipe; self.stage = stage; self.step = step; self.epoch = epoch; self.batchInEpoch = batchInEpoch
        self.storePath = storePath; self.storeImages = storeImages; self.featureShape = featureShape
        self.classes = classes; self.initFrom = initFrom; self.stages = stages; self.validation = validation
        self.best = best
    }

    public static func == (a: CheckpointFile, b: CheckpointFile) -> Bool {
        a.recipe == b.recipe && a.stage == b.stage && a.step == b.step && a.epoch == b.epoch
            && a.batchInEpoch == b.batchInEpoch && a.storePath == b.storePath && a.storeImages == b.storeImages
            && a.featureShape == b.featureShape && a.classes == b.classes && a.initFrom == b.initFrom
            && a.stages.map(\.name) == b.stages.map(\.name) && a.stages.map(\.state) == b.stages.map(\.state)
            && a.validation == b.validation && a.best?.record == b.best?.record && a.best?.state == b.best?.state
    }

    /// Writes the checkpoint atomically. Arrays and groups are written in sorted name order, so the
    /// same content gives the same bytes.
    public func write(to path: String) throws {
        var attrs: [(String, AttributeValue)] = [
            ("recipe", .string(recipe)), ("stage", .string(stage ?? "done")),
            ("step", .int(step)), ("epoch", .int(epoch)), ("batch_in_epoch", .int(batchInEpoch)),
            ("store", .string(storePath)), ("store_images", .int(storeImages)),
            ("feature_shape", .ints(featureShape)), ("channels", .int(featureShape.last ?? 0)),
            ("stages", .strings(stages.map(\.name))),
        ]
        if let k = classes { attrs.append(("classes", .int(k))) }
        if let src = initFrom { attrs.append(("init_from", .string(src))) }
        if let b = best?.record {
            attrs += [("best_stage", .string(b.stage)), ("best_epoch", .int(b.epoch)),
                      ("best_miou", .double(b.miou)), ("best_accuracy", .double(b.accuracy))]
        }
        var state = StateRecord()
        for (name, r) in stages { state.insert(r, at: "stages/" + name) }
        if let b = best { state.insert(b.state, at: "best") }
        state.set("history/val_epoch", validation.map { Int64($0.epoch) })
        state.set("history/val_miou", validation.map(\.miou))
        state.set("history/val_accuracy", validation.map(\.accuracy))
        do {
            let out = try atomicHDF5Output(path)
            let f = out.file!
            try f.setAttribute("format", Self.format)
            try f.setAttribute("version", Self.version)
            try f.write(attrs)
            for name in state.arrays.keys.sorted() {
                try Self.writeArray(f, name, state.arrays[name]!)
            }
            _ = try f.createStringDataset("history/val_stage", values: validation.map(\.stage))
            // Scalars: attributes of their group (created if it holds no array).
            var byGroup: [String: [(String, StateRecord.Scalar)]] = [:]
            for (k, v) in state.scalars {
                let parts = k.split(separator: "/", omittingEmptySubsequences: false)
                let group = parts.dropLast().joined(separator: "/")
                byGroup[group, default: []].append((String(parts.last!), v))
            }
            for g in byGroup.keys.sorted() {
                let loc: HDF5Location = g.isEmpty ? f : try Self.ensureGroup(f, g)
                for (k, v) in byGroup[g]!.sorted(by: { $0.0 < $1.0 }) {
                    let name = g.isEmpty ? "state:" + k : k
                    switch v {
                    case .int(let i): try loc.setAttribute(name, .int(i))
                    case .double(let d): try loc.setAttribute(name, .double(d))
                    case .string(let s): try loc.setAttribute(name, .string(s))
                    }
                }
            }
            try out.commit()
            Temporaries.unregister(out.temporaryPath)
        } catch let e as HDF5Error {
            throw storeError(e, file: path, "cannot write the checkpoint: ")
        }
    }

    static func ensureGroup(_ f: HDF5File, _ path: String) throws -> HDF5Group {
        var loc: HDF5Location = f
        var last: HDF5Group?
        for part in path.split(separator: "/") {
            let name = String(part)
            let g = loc.contains(name) ? try loc.group(name) : try loc.createGroup(name)
            loc = g
            last = g
        }
        return last!
    }

    static func writeArray(_ f: HDF5File, _ name: String, _ a: StateRecord.Array) throws {
        switch a {
        case .float32(let v, let s): try put(f, name, v, s)
        case .float64(let v, let s): try put(f, name, v, s)
        case .int64(let v, let s): try put(f, name, v, s)
        case .uint64(let v, let s): try put(f, name, v, s)
        }
    }

    static func put<T: HDF5Scalar>(_ f: HDF5File, _ name: String, _ v: [T], _ shape: [Int]) throws {
        let d = try f.createDataset(name, type: T.hdf5Type, shape: shape)
        if !v.isEmpty { try d.write(v) }
    }

    /// Reads a checkpoint. Errors name the file and what is wrong: not a checkpoint, another
    /// version, damaged.
    public static func read(path: String) throws -> CheckpointFile {
        guard FileManager.default.fileExists(atPath: path) else {
            throw StoreError(file: path, "no such checkpoint; run `unseg fit ... --checkpoint \(path)` first")
        }
        let f: HDF5File
        do { f = try HDF5File.open(path) } catch let e as HDF5Error { throw storeError(e, file: path) }
        do {
            let a = try f.readAttributes(path: path)
            let fmt = try a.optionalString("format") ?? ""
            guard fmt == format else {
                throw StoreError(file: path, "is \(fmt.isEmpty ? "not an unseg file (no 'format' attribute)" : "a '\(fmt)' file"), not a checkpoint ('\(format)'); pass the file `unseg fit --checkpoint` wrote")
            }
            let v = try a.int("version")
            guard v == version else {
                throw StoreError(file: path, "checkpoint version \(v) is not supported (this unseg reads version \(version)); fit again with this version")
            }
            var state = StateRecord()
            try readGroup(f, prefix: "", into: &state, path: path)
            let names = try a.strings("stages")
            let stages = names.map { (name: $0, state: state.nested("stages/" + $0)) }
            let vEpoch = try state.int64s("history/val_epoch")
            let vMiou = try state.doubles("history/val_miou"), vAcc = try state.doubles("history/val_accuracy")
            let vStage = f.contains("history/val_stage") ? try f.dataset("history/val_stage").readStrings() : []
            guard vStage.count == vMiou.count, vEpoch.count == vMiou.count, vAcc.count == vMiou.count else {
                throw StoreError(file: path, dataset: "/history", "validation history datasets have different lengths")
            }
            let val = (0..<vMiou.count).map {
                CheckpointValRecord(stage: vStage[$0], epoch: Int(vEpoch[$0]), miou: vMiou[$0], accuracy: vAcc[$0])
            }
            var best: (record: CheckpointValRecord, state: StateRecord)?
            if a.has("best_epoch") {
                best = (CheckpointValRecord(stage: try a.string("best_stage"), epoch: try a.int("best_epoch"),
                                            miou: try a.double("best_miou"), accuracy: try a.double("best_accuracy")),
                        state.nested("best"))
            }
            let stageName = try a.string("stage")
            return CheckpointFile(recipe: try a.string("recipe"), stage: stageName == "done" ? nil : stageName,
                                  step: try a.int("step"), epoch: try a.int("epoch"), batchInEpoch: try a.int("batch_in_epoch"),
                                  storePath: try a.string("store"), storeImages: try a.int("store_images"),
                                  featureShape: try a.ints("feature_shape"), classes: try a.optionalInt("classes"),
                                  initFrom: try a.optionalString("init_from"), stages: stages, validation: val, best: best)
        } catch let e as HDF5Error {
            throw storeError(e, file: path, "damaged or incomplete checkpoint: ")
        } catch let e as KernelError {
            throw StoreError(file: path, "damaged or incomplete checkpoint: \(e)")
        }
    }

    static func readGroup(_ loc: HDF5Location, prefix: String, into state: inout StateRecord, path: String) throws {
        for name in try loc.memberNames() {
            let full = prefix.isEmpty ? name : prefix + "/" + name
            if loc.isDataset(name) {
                let d = try loc.dataset(name)
                let shape = d.shape
                let n = d.elementCount
                switch d.elementType {
                case .float32: state.arrays[full] = .float32(n == 0 ? [] : try d.read(Float.self), shape: shape)
                case .float64: state.arrays[full] = .float64(n == 0 ? [] : try d.read(Double.self), shape: shape)
                case .int64: state.arrays[full] = .int64(n == 0 ? [] : try d.read(Int64.self), shape: shape)
                case .uint64: state.arrays[full] = .uint64(n == 0 ? [] : try d.read(UInt64.self), shape: shape)
                case .variableString, .fixedString: continue
                default:
                    throw StoreError(file: path, dataset: "/" + full, "has element type \(d.elementType); a checkpoint holds float32, float64, int64 and uint64 arrays only")
                }
            } else {
                let g = try loc.group(name)
                for (k, v) in try g.readAttributes(path: path).entries {
                    switch v {
                    case .int(let i): state.scalars[full + "/" + k] = .int(i)
                    case .double(let d): state.scalars[full + "/" + k] = .double(d)
                    case .string(let s): state.scalars[full + "/" + k] = .string(s)
                    default: break
                    }
                }
                try readGroup(g, prefix: full, into: &state, path: path)
            }
        }
    }
}
