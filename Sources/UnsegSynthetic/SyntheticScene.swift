import UnsegCore
import UnsegLinAlg
import UnsegStore

// Scene layout of the synthetic corpus: a street scene drawn with the
// painter's algorithm into a per-pixel instance map (sky, skyline of buildings
// and trees, road / sidewalk / terrain in perspective below a random horizon,
// then poles, vehicles and people sorted far to near, then unlabelled regions).

/// The scene roles a class can play; each role is filled by zero or more classes.
enum SceneRole: Int, CaseIterable, Sendable {
    case road, sidewalk, parking, railTrack, building, wall, fence, guardRail, bridge, tunnel
    case pole, poleGroup, trafficLight, trafficSign, vegetation, terrain, sky
    case person, rider, car, largeVehicle, twoWheeler

    /// Semantic group (cityscapes categories): classes of a group share a feature direction.
    var group: Int {
        switch self {
        case .road, .sidewalk, .parking, .railTrack: return 0          // flat
        case .building, .wall, .fence, .guardRail, .bridge, .tunnel: return 1  // construction
        case .pole, .poleGroup, .trafficLight, .trafficSign: return 2 // object
        case .vegetation, .terrain: return 3                           // nature
        case .sky: return 4
        case .person, .rider: return 5                                 // human
        case .car, .largeVehicle, .twoWheeler: return 6                // vehicle
        }
    }

    /// Whether instances of this role are "things" (countable objects; boundary ignore is likelier).
    var isThing: Bool {
        switch self {
        case .person, .rider, .car, .largeVehicle, .twoWheeler, .pole, .poleGroup, .trafficLight, .trafficSign: return true
        default: return false
        }
    }
}

/// Which classes play which scene role, with sampling weights.
struct SceneRoles: Sendable {
    var members: [[(cls: Int, weight: Float)]]   // indexed by SceneRole.rawValue
    var groupOfClass: [Int]
    var roleOfClass: [SceneRole]

    init(classCount: Int, assignments: [(SceneRole, Int, Float)]) {
        members = Array(repeating: [], count: SceneRole.allCases.count)
        groupOfClass = Array(repeating: 0, count: classCount)
        roleOfClass = Array(repeating: .road, count: classCount)
        for (role, cls, w) in assignments {
            members[role.rawValue].append((cls, w))
            groupOfClass[cls] = role.group
            roleOfClass[cls] = role
        }
    }

    func has(_ role: SceneRole) -> Bool { !members[role.rawValue].isEmpty }

    /// A class for `role` drawn by weight, or nil when no class plays it.
    func pick(_ role: SceneRole, _ rng: inout SeededRandom) -> Int? {
        let m = members[role.rawValue]
        if m.isEmpty { return nil }
        if m.count == 1 { return m[0].cls }
        let total = m.reduce(0) { $0 + $1.weight }
        var u = rng.float() * total
        for e in m {
            if u < e.weight { return e.cls }
            u -= e.weight
        }
        return m[m.count - 1].cls
    }

    /// The cityscapes27 classes in their natural roles.
    static func cityscapes27() -> SceneRoles {
        let r: [(SceneRole, Int, Float)] = [
            (.road, 0, 1), (.sidewalk, 1, 1), (.parking, 2, 1), (.railTrack, 3, 1), (.building, 4, 1),
            (.wall, 5, 1), (.fence, 6, 1), (.guardRail, 7, 1), (.bridge, 8, 1), (.tunnel, 9, 1),
            (.pole, 10, 1), (.poleGroup, 11, 1), (.trafficLight, 12, 1), (.trafficSign, 13, 1),
            (.vegetation, 14, 1), (.terrain, 15, 1), (.sky, 16, 1), (.person, 17, 1), (.rider, 18, 1),
            (.car, 19, 1), (.largeVehicle, 20, 3), (.largeVehicle, 21, 2.5), (.largeVehicle, 22, 0.6),
            (.largeVehicle, 23, 0.6), (.largeVehicle, 24, 1.2), (.twoWheeler, 25, 1), (.twoWheeler, 26, 2),
        ]
        return SceneRoles(classCount: 27, assignments: r)
    }

    /// Any class count: class i takes the i-th most important role; classes beyond the
    /// role list share object roles (so the class frequencies stay imbalanced).
    static func generic(classCount k: Int) -> SceneRoles {
        let order: [SceneRole] = [
            .road, .building, .sky, .vegetation, .car, .sidewalk, .person, .pole, .terrain, .trafficSign,
            .fence, .wall, .largeVehicle, .trafficLight, .rider, .twoWheeler, .parking, .guardRail,
            .railTrack, .bridge, .tunnel, .poleGroup,
        ]
        let extra: [SceneRole] = [.car, .person, .largeVehicle, .trafficSign, .pole, .twoWheeler, .fence, .wall]
        var a: [(SceneRole, Int, Float)] = []
        for i in 0..<k {
            a.append((i < order.count ? order[i] : extra[(i - order.count) % extra.count], i, 1))
        }
        return SceneRoles(classCount: k, assignments: a)
    }

    /// Base RGB colours of the cityscapes27 classes (plausible, not the palette).
    static let cityscapesColor: [SIMD3<Float>] = [
        SIMD3(95, 92, 100), SIMD3(160, 150, 145), SIMD3(130, 110, 120), SIMD3(110, 90, 80), SIMD3(150, 120, 100),
        SIMD3(175, 165, 150), SIMD3(120, 125, 110), SIMD3(190, 190, 195), SIMD3(120, 115, 110), SIMD3(50, 45, 45),
        SIMD3(100, 100, 105), SIMD3(90, 95, 100), SIMD3(40, 40, 40), SIMD3(200, 180, 40), SIMD3(60, 120, 45),
        SIMD3(140, 160, 80), SIMD3(135, 180, 230), SIMD3(180, 60, 60), SIMD3(170, 80, 40), SIMD3(40, 60, 140),
        SIMD3(200, 200, 205), SIMD3(210, 170, 40), SIMD3(230, 230, 215), SIMD3(160, 150, 140), SIMD3(60, 110, 170),
        SIMD3(30, 30, 35), SIMD3(100, 40, 120),
    ]

    /// Texture amplitude (RGB units) of the cityscapes27 classes: vegetation and terrain busy, sky smooth.
    static let cityscapesTexture: [Float] = [
        6, 8, 7, 12, 9, 6, 10, 4, 8, 5, 3, 3, 3, 3, 22, 16, 2, 6, 6, 5, 5, 5, 5, 5, 5, 5, 5,
    ]
}

/// One drawn region: its class (-1 = unlabelled), sub-mode and appearance.
struct SceneInstance: Sendable {
    var cls: Int
    var mode: Int
    var colorJitter: SIMD3<Float>
    var shade: Float            // vertical shading slope
    var ignoreBoundary: Bool    // a 1-pixel ignore band on its boundary
}

/// A rasterised scene: instance id per pixel, the instances and the label map.
struct Scene: Sendable {
    let size: Int
    var ids: [UInt8]            // [H*W] index into instances
    var instances: [SceneInstance]
    var labels: [UInt8]         // [H*W], 255 = ignore
}

struct SceneBuilder {
    let n: Int
    let s: Float
    var ids: [UInt8]
    var instances: [SceneInstance] = []
    let modes: Int

    init(size: Int, modes: Int) {
        n = size
        s = Float(size)
        ids = [UInt8](repeating: 0, count: size * size)
        self.modes = modes
    }

    /// A new instance of `cls` (-1 = unlabelled), or nil when all 255 ids are taken.
    mutating func add(_ cls: Int, role: SceneRole?, _ rng: inout SeededRandom) -> UInt8? {
        if instances.count >= 255 { return nil }
        // Sub-mode j with weight 1/(j+1): the first mode dominates, the last is rarer.
        var mode = 0
        if modes > 1 {
            var total: Float = 0
            for j in 0..<modes { total += 1 / Float(j + 1) }
            var u = rng.float() * total
            mode = modes - 1
            for j in 0..<modes {
                let w = 1 / Float(j + 1)
                if u < w { mode = j; break }
                u -= w
            }
        }
        let jitter = SIMD3(rng.float(in: -12..<12), rng.float(in: -12..<12), rng.float(in: -12..<12))
        let shade = rng.float(in: -0.15..<0.15)
        let pIgnore: Double = cls < 0 ? 0 : ((role?.isThing ?? false) ? 0.5 : 0.08)
        instances.append(SceneInstance(cls: cls, mode: mode, colorJitter: jitter, shade: shade,
                                       ignoreBoundary: rng.bernoulli(pIgnore)))
        return UInt8(instances.count - 1)
    }

    /// Pixel column range whose centres lie in [x0, x1).
    @inline(__always) func cols(_ x0: Float, _ x1: Float) -> Range<Int> {
        let lo = max(0, min(n, Int((x0 - 0.5).rounded(.up))))
        let hi = max(lo, min(n, Int((x1 - 0.5).rounded(.up))))
        return lo..<hi
    }

    mutating func rect(_ x0: Float, _ y0: Float, _ x1: Float, _ y1: Float, _ id: UInt8?) {
        guard let id else { return }
        let xr = cols(x0, x1), yr = cols(y0, y1)
        if xr.isEmpty || yr.isEmpty { return }
        let n = self.n
        ids.withUnsafeMutableBufferPointer { p in
            for y in yr { for x in xr { p[y * n + x] = id } }
        }
    }

    mutating func span(_ y: Int, _ x0: Float, _ x1: Float, _ id: UInt8?) {
        guard let id, y >= 0, y < n else { return }
        let xr = cols(x0, x1)
        let n = self.n
        ids.withUnsafeMutableBufferPointer { p in for x in xr { p[y * n + x] = id } }
    }

    mutating func ellipse(_ cx: Float, _ cy: Float, _ rx: Float, _ ry: Float, _ id: UInt8?) {
        guard let id, rx > 0, ry > 0 else { return }
        let yr = cols(cy - ry, cy + ry)
        for y in yr {
            let dy = (Float(y) + 0.5 - cy) / ry
            let q = 1 - dy * dy
            if q <= 0 { continue }
            let hw = rx * q.squareRoot()
            span(y, cx - hw, cx + hw, id)
        }
    }

    /// Depth-ordered foreground objects.
    enum Object { case pole(Float), vehicle(Float), person(Float) }

    static func build(size: Int, roles: SceneRoles, modesPerClass: Int, smallObjects: Int = 0, rng: inout SeededRandom) -> Scene {
        var b = SceneBuilder(size: size, modes: modesPerClass)
        let s = b.s
        func u(_ lo: Float, _ hi: Float) -> Float { rng.float(in: lo..<hi) }
        func new(_ role: SceneRole) -> UInt8? {
            guard let cls = roles.pick(role, &rng) else { return nil }
            return b.add(cls, role: role, &rng)
        }

        // Sky (or, without a sky class, the building class) fills the frame.
        let skyID = roles.has(.sky) ? new(.sky) : new(.building)
        b.rect(0, 0, s, s, skyID)
        let horizon = s * u(0.36, 0.52)
        let vp = s * u(0.3, 0.7)

        // Skyline: blocks of building or vegetation standing on the ground, reaching the bottom.
        var x: Float = 0
        while x < s {
            let w = s * u(0.07, 0.26)
            let top = horizon - s * u(0.15, 0.5)
            if roles.has(.vegetation) && rng.bernoulli(0.35) {
                let id = new(.vegetation)
                b.ellipse(x + w / 2, top + w * 0.4, w * 0.6, w * 0.45, id)
                b.rect(x, top + w * 0.4, x + w, s, id)
            } else {
                let nid = new(.building)
                b.rect(x, top, x + w, s, nid)
            }
            x += w
        }
        if roles.has(.vegetation) {
            for _ in 0..<rng.int(in: 0...3) {
                let r = s * u(0.05, 0.14)
                let nid = new(.vegetation)
                b.ellipse(u(0, 1) * s, horizon - r * u(0.4, 1.6), r * 1.15, r, nid)
            }
        }
        if roles.has(.bridge) && rng.bernoulli(0.06) {
            let y0 = s * u(0.04, 0.2)
            let nid = new(.bridge)
            b.rect(0, y0, s, y0 + s * u(0.04, 0.09), nid)
        }
        if roles.has(.tunnel) && rng.bernoulli(0.04) {
            let nid = new(.tunnel)
            b.rect(vp - s * u(0.2, 0.35), horizon - s * u(0.2, 0.35), vp + s * u(0.2, 0.35), horizon + 2, nid)
        }
        if roles.has(.wall) && rng.bernoulli(0.3) {
            let len = s * u(0.15, 0.45)
            let left = rng.bernoulli(0.5)
            let nid = new(.wall)
            b.rect(left ? 0 : s - len, horizon - s * u(0.03, 0.09), left ? len : s, horizon + s * 0.03, nid)
        }

        // Ground in perspective: road in the middle, sidewalks, optional terrain, parking, rail track.
        let rw = u(0.55, 0.9), sw = u(0.12, 0.35)
        let roadID = new(.road)
        let swL = new(.sidewalk), swR = new(.sidewalk)
        let tw = u(0.08, 0.3)
        let terL = roles.has(.terrain) && rng.bernoulli(0.5) ? new(.terrain) : nil
        let terR = roles.has(.terrain) && rng.bernoulli(0.5) ? new(.terrain) : nil
        let parking = roles.has(.parking) && rng.bernoulli(0.2) ? new(.parking) : nil
        let parkLeft = rng.bernoulli(0.5)
        let parkT0 = u(0.1, 0.6), parkT1 = parkT0 + u(0.15, 0.35)
        let rail = roles.has(.railTrack) && rng.bernoulli(0.08) ? new(.railTrack) : nil
        func roadHalf(_ t: Float) -> Float { s * (0.012 + rw * t) }
        func sideHalf(_ t: Float) -> Float { roadHalf(t) + s * (0.006 + sw * t) }
        func depth(_ y: Float) -> Float { max(0, (y - horizon) / (s - horizon)) }
        let yStart = max(0, Int(horizon.rounded(.down)))
        for y in yStart..<b.n {
            let t = depth(Float(y) + 0.5)
            if t <= 0 { continue }
            let rh = roadHalf(t), sh = sideHalf(t), th = sh + s * (0.005 + tw * t)
            b.span(y, vp - th, vp - sh, terL)
            b.span(y, vp + sh, vp + th, terR)
            b.span(y, vp - sh, vp - rh, swL)
            b.span(y, vp + rh, vp + sh, swR)
            if t >= parkT0 && t < parkT1 {
                if parkLeft { b.span(y, vp - sh, vp - rh, parking) } else { b.span(y, vp + rh, vp + sh, parking) }
            }
            b.span(y, vp - rh, vp + rh, roadID)
            let railHalf = s * (0.003 + 0.1 * t)
            b.span(y, vp - railHalf, vp + railHalf, rail)
        }
        if roles.has(.fence) && rng.bernoulli(0.35) {
            let len = s * u(0.15, 0.5)
            let left = rng.bernoulli(0.5)
            let nid = new(.fence)
            b.rect(left ? 0 : s - len, horizon - s * u(0.02, 0.07), left ? len : s, horizon + s * u(0.01, 0.05), nid)
        }
        if roles.has(.guardRail) && rng.bernoulli(0.2) {
            let y0 = horizon + s * u(0.01, 0.06)
            let x0 = s * u(0, 0.6)
            let nid = new(.guardRail)
            b.rect(x0, y0, x0 + s * u(0.15, 0.4), y0 + max(3, s * 0.02), nid)
        }

        // Foreground objects, drawn far to near.
        var objects: [(Float, Object)] = []
        let poleCount = roles.has(.pole) ? SceneBuilder.count(&rng, [0.1, 0.2, 0.25, 0.2, 0.15, 0.1]) : 0
        for _ in 0..<poleCount { let t = u(0.08, 0.95); objects.append((t, .pole(t))) }
        let carCount = roles.has(.car) ? SceneBuilder.count(&rng, [0.05, 0.12, 0.2, 0.2, 0.18, 0.13, 0.12]) : 0
        for _ in 0..<carCount { let t = u(0.04, 1.0); objects.append((t, .vehicle(t))) }
        let personCount = roles.has(.person) ? SceneBuilder.count(&rng, [0.1, 0.15, 0.2, 0.18, 0.15, 0.12, 0.1]) : 0
        for _ in 0..<personCount { let t = u(0.05, 0.95); objects.append((t, .person(t))) }
        objects.sort { $0.0 < $1.0 }   // stable enough: ties have probability ~0 and sort is deterministic anyway
        for (t, obj) in objects {
            let yb = horizon + t * (s - horizon)
            let rh = roadHalf(t), sh = sideHalf(t)
            switch obj {
            case .pole:
                let side: Float = rng.bernoulli(0.5) ? -1 : 1
                let px = vp + side * (rh + u(0.3, 0.95) * (sh - rh))
                let width = max(2, s * (0.006 + 0.012 * t))
                let height = s * u(0.25, 0.45) * (0.6 + 0.8 * t)
                let top = yb - height
                if roles.has(.poleGroup) && rng.bernoulli(0.15) {
                    let id = new(.poleGroup)
                    for k in 0..<rng.int(in: 2...3) {
                        let cx = px + Float(k) * width * 3
                        b.rect(cx - width / 2, top + Float(k) * width * 2, cx + width / 2, yb, id)
                    }
                } else {
                    let nid = new(.pole)
                    b.rect(px - width / 2, top, px + width / 2, yb, nid)
                }
                if roles.has(.trafficSign) && rng.bernoulli(0.6) {
                    let w = width * u(4, 8), h = w * u(0.6, 1.2)
                    let cy = top + u(0, 0.1) * height
                    if rng.bernoulli(0.5) {
                        let nid = new(.trafficSign)
                        b.rect(px - w / 2, cy, px + w / 2, cy + h, nid)
                    } else {
                        let nid = new(.trafficSign)
                        b.ellipse(px, cy + w / 2, w / 2, w / 2, nid)
                    }
                }
                if roles.has(.trafficLight) && rng.bernoulli(0.4) {
                    let w = width * 3
                    let nid = new(.trafficLight)
                    b.rect(px - w / 2, top - w * 2.5, px + w / 2, top, nid)
                }
            case .vehicle:
                let large = roles.has(.largeVehicle) && rng.bernoulli(0.18)
                let cx = vp + u(-0.85, 0.85) * rh
                let w = s * (0.05 + 0.32 * t) * (large ? 1.4 : 1)
                if large {
                    let h = w * u(0.75, 1.0)
                    let nid = new(.largeVehicle)
                    b.rect(cx - w / 2, yb - h, cx + w / 2, yb, nid)
                } else {
                    let h = w * u(0.5, 0.65)
                    let id = new(.car)
                    b.rect(cx - w / 2, yb - 0.6 * h, cx + w / 2, yb, id)
                    b.rect(cx - 0.35 * w, yb - h, cx + 0.35 * w, yb - 0.55 * h, id)
                }
            case .person:
                let side: Float = rng.bernoulli(0.5) ? -1 : 1
                let px = vp + side * (rh + u(0.05, 0.95) * (sh - rh))
                let h = s * (0.06 + 0.3 * t)
                if roles.has(.rider) && roles.has(.twoWheeler) && rng.bernoulli(0.25) {
                    let nid = new(.twoWheeler)
                    b.ellipse(px, yb - 0.18 * h, 0.38 * h, 0.18 * h, nid)
                    let rid = new(.rider)
                    b.ellipse(px, yb - 0.55 * h, 0.14 * h, 0.25 * h, rid)
                    b.ellipse(px, yb - 0.86 * h, 0.08 * h, 0.09 * h, rid)
                } else {
                    let id = new(.person)
                    b.ellipse(px, yb - 0.55 * h, 0.13 * h, 0.28 * h, id)
                    b.rect(px - 0.1 * h, yb - 0.35 * h, px + 0.1 * h, yb, id)
                    b.ellipse(px, yb - 0.88 * h, 0.08 * h, 0.09 * h, id)
                }
            }
        }

        // Extra small and thin objects (synth --small-objects): poles 1-3 px wide, signs 3-9 px, near the horizon.
        for _ in 0..<smallObjects {
            let x = u(0.02, 0.98) * s
            if roles.has(.pole) && (rng.bernoulli(0.5) || !roles.has(.trafficSign)) {
                let width = u(1, 3), yb = horizon + u(0, 0.35) * (s - horizon)
                let nid = new(.pole)
                b.rect(x - width / 2, yb - s * u(0.08, 0.25), x + width / 2, yb, nid)
            } else if roles.has(.trafficSign) {
                let side = u(3, 9), cy = horizon - s * u(-0.1, 0.25)
                let nid = new(.trafficSign)
                if rng.bernoulli(0.5) { b.rect(x - side / 2, cy - side / 2, x + side / 2, cy + side / 2, nid) } else { b.ellipse(x, cy, side / 2, side / 2, nid) }
            }
        }

        // Unlabelled regions: an ego-vehicle hood at the bottom, sometimes an unknown object.
        if rng.bernoulli(0.35) {
            let nid = b.add(-1, role: nil, &rng)
            b.ellipse(s / 2, s * (1 + u(0, 0.08)), s * u(0.6, 0.9), s * u(0.12, 0.2), nid)
        }
        if rng.bernoulli(0.15) {
            let w = s * u(0.04, 0.12), h = s * u(0.04, 0.12)
            let x0 = u(0, 1) * (s - w), y0 = u(0.2, 0.9) * (s - h)
            let nid = b.add(-1, role: nil, &rng)
            b.rect(x0, y0, x0 + w, y0 + h, nid)
        }
        return Scene(size: size, ids: b.ids, instances: b.instances, labels: b.labels())
    }

    /// A count drawn from the probabilities `p` (for 0, 1, 2, ...).
    static func count(_ rng: inout SeededRandom, _ p: [Float]) -> Int {
        var u = rng.float() * p.reduce(0, +)
        for (i, q) in p.enumerated() {
            if u < q { return i }
            u -= q
        }
        return p.count - 1
    }

    /// Class per pixel; 255 on unlabelled instances and on a 1-pixel band inside the
    /// boundary of instances flagged `ignoreBoundary`.
    func labels() -> [UInt8] {
        let n = self.n
        let lut: [UInt8] = instances.map { $0.cls < 0 ? 255 : UInt8($0.cls) }
        let flag: [Bool] = instances.map { $0.ignoreBoundary }
        var out = [UInt8](repeating: 255, count: n * n)
        ids.withUnsafeBufferPointer { p in
            out.withUnsafeMutableBufferPointer { o in
                for y in 0..<n {
                    for x in 0..<n {
                        let i = y * n + x
                        let id = Int(p[i])
                        var l = lut[id]
                        if flag[id] {
                            if (x > 0 && p[i - 1] != p[i]) || (x < n - 1 && p[i + 1] != p[i])
                                || (y > 0 && p[i - n] != p[i]) || (y < n - 1 && p[i + n] != p[i]) {
                                l = 255
                            }
                        }
                        o[i] = l
                    }
                }
            }
        }
        return out
    }
}
