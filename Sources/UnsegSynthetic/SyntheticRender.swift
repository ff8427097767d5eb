import Foundation
import UnsegCore
import UnsegLinAlg
import UnsegStore

// Feature and RGB rendering of a synthetic scene.
//
// Features are computed per cell, never per pixel and channel:
//   fractions A [cells, R]  = area share of each instance in each cell
//   blurred   A' = A blurred with a 3x3 Gaussian on the cell grid (mixes across boundaries)
//   mixture   S  = A' V, V [R, C] the instance vectors (sparse: a cell touches few instances)
//   feature   f_i = g * (r_i * (S_i + noise_i) + o)
// with g a per-image norm scale, r_i a per-cell log-normal norm factor and o the
// per-image nuisance offset.

struct Renderer {
    let config: SyntheticConfig
    let structure: ClassStructure

    /// Approximately standard-normal sample from one 64-bit draw: the sum of four
    /// 16-bit uniforms (Irwin-Hall), centred and scaled to unit variance. Bounded
    /// by +-3.46; exact integer arithmetic before one conversion, so deterministic.
    @inline(__always) static func fastNormal(_ rng: inout SeededRandom) -> Float {
        let r = rng.next()
        let sum = (r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48)
        // mean of (sum + 2) / 65536 is 2, variance 4/12: z = ((sum + 2)/65536 - 2) * sqrt(3)
        return (Float(Int64(sum) - 131_070)) * (1.7320508 / 65536)
    }

    /// Features and RGB of `scene`, and the features of each crop in `crops` (the scene rendered
    /// zoomed in: the box resized to the full image by nearest pixels, then the same feature model
    /// with the image's instance vectors, nuisance offset and norm scale, and each cell's depth drift
    /// at its position in the full image; noise and norm factors from the crop's own stream of
    /// `cropSeed`). Drawing no crops leaves the full view's bytes as they were.
    func render(scene: Scene, rng: inout SeededRandom, crops: [CropBox] = [], cropSeed: UInt64 = 0) -> (Matrix, [UInt8], [Matrix]) {
        let c = config.channels, h = config.gridSize, size = config.imageSize
        let instances = scene.instances
        let v = instanceVectors(instances, &rng)
        let fullT: [Float] = (0..<h).map { 2 * (Float($0) + 0.5) / Float(h) - 1 }
        var feat = mixture(ids: scene.ids, rowT: fullT, v: v, instances: instances)

        // Per-image nuisance offset in a low-rank subspace shared by the corpus, norm scale, noise.
        var offset = [Float](repeating: 0, count: c)
        let nuis = structure.nuisance
        for q in 0..<nuis.rows {
            let a = rng.gaussian()
            for j in 0..<c { offset[j] += a * nuis[q, j] }
        }
        let on = max(Reduce.dot(offset, offset).squareRoot(), 1e-12)
        let offsetNorm = config.nuisance * rng.float(in: 0.5..<1.5)
        for j in 0..<c { offset[j] *= offsetNorm / on }
        let global = config.featureScale * Float(exp(0.15 * Double(rng.gaussian())))
        addNoise(&feat, offset: offset, global: global, rng: &rng)
        let rgb = colors(scene: scene, rng: &rng)

        let cropFeatures: [Matrix] = crops.enumerated().map { k, box in
            var r = SeededRandom.stream(seed: cropSeed, index: UInt64(k))
            let rowT: [Float] = (0..<h).map { y in
                2 * ((box.y0 + (Float(y) + 0.5) * box.height / Float(h)) / Float(size)) - 1
            }
            var f = mixture(ids: Renderer.zoom(scene.ids, size: size, box: box), rowT: rowT, v: v, instances: instances)
            addNoise(&f, offset: offset, global: global, rng: &r)
            return f
        }
        return (feat, rgb, cropFeatures)
    }

    /// The `size x size` id map of `box` resized to `size x size` by nearest pixels (pixel `X` of the
    /// crop reads `x0 + floor((X + 0.5) w / size)`): for a half-side box each pixel becomes 2 x 2.
    static func zoom(_ ids: [UInt8], size: Int, box: CropBox) -> [UInt8] {
        let x0 = Int(box.x0), y0 = Int(box.y0), bw = Int(box.width), bh = Int(box.height)
        let xs = (0..<size).map { min(size - 1, x0 + ((2 * $0 + 1) * bw) / (2 * size)) }
        let ys = (0..<size).map { min(size - 1, y0 + ((2 * $0 + 1) * bh) / (2 * size)) }
        var out = [UInt8](repeating: 0, count: size * size)
        for y in 0..<size {
            let row = ys[y] * size
            for x in 0..<size { out[y * size + x] = ids[row + xs[x]] }
        }
        return out
    }

    /// Instance vectors V [R, C]: sub-mode direction plus jitter, unit, times the class norm.
    func instanceVectors(_ instances: [SceneInstance], _ rng: inout SeededRandom) -> [Float] {
        let c = config.channels, m = config.modesPerClass
        let r = instances.count
        var v = [Float](repeating: 0, count: r * c)
        let jitter = config.instanceSpread / Float(c).squareRoot()
        structure.modes.data.withUnsafeBufferPointer { modes in
            structure.voidDirection.withUnsafeBufferPointer { void in
                v.withUnsafeMutableBufferPointer { vp in
                    for k in 0..<r {
                        let inst = instances[k]
                        let src = inst.cls < 0 ? void.baseAddress! : modes.baseAddress! + (inst.cls * m + inst.mode) * c
                        let dst = vp.baseAddress! + k * c
                        for j in 0..<c { dst[j] = src[j] + jitter * Renderer.fastNormal(&rng) }
                        let norm = Reduce.dot(UnsafePointer(dst), UnsafePointer(dst), c).squareRoot()
                        let scale = (inst.cls < 0 ? 1 : structure.classNorm[inst.cls]) / max(norm, 1e-12)
                        for j in 0..<c { dst[j] *= scale }
                    }
                }
            }
        }
        return v
    }

    /// The noiseless mixture `S = A' V` of an id map (plus each labelled instance's depth drift
    /// `depthDrift (2t - 1) classNorm u_k`, `rowT[y]` = 2t - 1 of cell row y), `[cells, C]`.
    func mixture(ids: [UInt8], rowT: [Float], v: [Float], instances: [SceneInstance]) -> Matrix {
        let c = config.channels, p = config.patchSize, h = config.gridSize, size = config.imageSize
        let cells = h * h, r = instances.count
        // Area fractions A [cells, R] (pixel counts / p^2).
        var frac = [Float](repeating: 0, count: cells * r)
        let inv = 1 / Float(p * p)
        ids.withUnsafeBufferPointer { ids in
            frac.withUnsafeMutableBufferPointer { f in
                for y in 0..<size {
                    let rowBase = (y / p) * h
                    for x in 0..<size {
                        f[(rowBase + x / p) * r + Int(ids[y * size + x])] += inv
                    }
                }
            }
        }
        if config.blurSigma > 0 { frac = Renderer.blur3x3(frac, grid: h, width: r, sigma: config.blurSigma) }

        // Mixture S = A' V, skipping the (many) zero fractions, plus the depth drift.
        var feat = Matrix(rows: cells, cols: c)
        let driftScale: [Float] = instances.map { $0.cls < 0 ? 0 : config.depthDrift * structure.classNorm[$0.cls] }
        frac.withUnsafeBufferPointer { f in
            v.withUnsafeBufferPointer { vp in
                structure.drift.data.withUnsafeBufferPointer { dp in
                    feat.data.withUnsafeMutableBufferPointer { out in
                        for i in 0..<cells {
                            let o = out.baseAddress! + i * c
                            let t = rowT[i / h]
                            for k in 0..<r {
                                let w = f[i * r + k]
                                if w == 0 { continue }
                                let src = vp.baseAddress! + k * c
                                for j in 0..<c { o[j] += w * src[j] }
                                let a = w * t * driftScale[k]
                                if a != 0 {
                                    let d = dp.baseAddress! + instances[k].cls * c
                                    for j in 0..<c { o[j] += a * d[j] }
                                }
                            }
                        }
                    }
                }
            }
        }
        return feat
    }

    /// `f_i = g (r_i (S_i + noise_i) + o)` in place: per-cell log-normal norm factor and isotropic noise from `rng`.
    func addNoise(_ feat: inout Matrix, offset: [Float], global: Float, rng: inout SeededRandom) {
        let c = config.channels, cells = feat.rows
        let sigma = config.noise / Float(c).squareRoot()
        let spread = Double(config.normSpread)
        feat.data.withUnsafeMutableBufferPointer { out in
            offset.withUnsafeBufferPointer { off in
                for i in 0..<cells {
                    let ri = Float(exp(spread * Double(rng.gaussian())))
                    let o = out.baseAddress! + i * c
                    for j in 0..<c {
                        o[j] = global * (ri * (o[j] + sigma * Renderer.fastNormal(&rng)) + off[j])
                    }
                }
            }
        }
    }

    /// RGB: instance colour (class + sub-mode + jitter), vertical shading, texture, image brightness.
    func colors(scene: Scene, rng: inout SeededRandom) -> [UInt8] {
        let size = config.imageSize, instances = scene.instances, m = config.modesPerClass
        let brightness = rng.float(in: 0.8..<1.15)
        var colors: [SIMD3<Float>] = []
        var texture: [Float] = []
        for inst in instances {
            if inst.cls < 0 {
                let g = rng.float(in: 30..<90)
                colors.append(SIMD3(g, g, g + 5) + inst.colorJitter)
                texture.append(6)
            } else {
                colors.append(structure.classColor[inst.cls] + structure.modeColor[inst.cls * m + inst.mode] + inst.colorJitter)
                texture.append(structure.classTexture[inst.cls])
            }
        }
        var rgb = [UInt8](repeating: 0, count: size * size * 3)
        let invSize = 1 / Float(size)
        scene.ids.withUnsafeBufferPointer { ids in
            rgb.withUnsafeMutableBufferPointer { out in
                for y in 0..<size {
                    let fy = (Float(y) + 0.5) * invSize - 0.5
                    for x in 0..<size {
                        let i = y * size + x
                        let id = Int(ids[i])
                        let bits = rng.next()
                        let t0 = Float(Int(bits & 0xFFFF) - 32768) * (1 / 32768)
                        let t1 = Float(Int((bits >> 16) & 0xFFFF) - 32768) * (1 / 32768)
                        let t2 = Float(Int((bits >> 32) & 0xFFFF) - 32768) * (1 / 32768)
                        // Mostly luminance texture with a little chroma.
                        let amp = texture[id]
                        let lum = amp * t0
                        let shade = (1 + instances[id].shade * fy) * brightness
                        let col = colors[id] * shade + SIMD3(lum + 0.3 * amp * t1, lum, lum + 0.3 * amp * t2)
                        out[3 * i] = Renderer.byte(col.x)
                        out[3 * i + 1] = Renderer.byte(col.y)
                        out[3 * i + 2] = Renderer.byte(col.z)
                    }
                }
            }
        }
        return rgb
    }

    @inline(__always) static func byte(_ v: Float) -> UInt8 {
        UInt8(max(0, min(255, v.rounded())))
    }

    /// Separable 3-tap Gaussian blur of a `[grid, grid, width]` array over the two grid
    /// axes, replicating edge cells. Weights `[a, 1 - 2a, a]` with `a = e^(-1/(2 sigma^2)) / (1 + 2 e^(-1/(2 sigma^2)))`.
    static func blur3x3(_ src: [Float], grid h: Int, width r: Int, sigma: Float) -> [Float] {
        let e = Float(exp(-1 / (2 * Double(sigma) * Double(sigma))))
        let a = e / (1 + 2 * e), b = 1 - 2 * a
        var tmp = [Float](repeating: 0, count: src.count)
        var out = [Float](repeating: 0, count: src.count)
        src.withUnsafeBufferPointer { s in
            tmp.withUnsafeMutableBufferPointer { t in
                for y in 0..<h {
                    for x in 0..<h {
                        let l = (y * h + max(x - 1, 0)) * r, c0 = (y * h + x) * r, rr = (y * h + min(x + 1, h - 1)) * r
                        for k in 0..<r { t[c0 + k] = a * s[l + k] + b * s[c0 + k] + a * s[rr + k] }
                    }
                }
            }
        }
        tmp.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { t in
                for y in 0..<h {
                    for x in 0..<h {
                        let u = (max(y - 1, 0) * h + x) * r, c0 = (y * h + x) * r, d = (min(y + 1, h - 1) * h + x) * r
                        for k in 0..<r { t[c0 + k] = a * s[u + k] + b * s[c0 + k] + a * s[d + k] }
                    }
                }
            }
        }
        return out
    }
}
