import Testing
import UnsegTestSupport
import UnsegLinAlg
@testable import UnsegProposals

@Suite struct MedianFilterTests {
    /// Direct definition: pad by reflection (index -1 -> 1, n -> n - 2; a side of 1 repeats its
    /// cell), gather the 3x3 window, sort, take the 5th value.
    static func naive(_ m: [Float], h: Int, w: Int) -> [Float] {
        func refl(_ i: Int, _ n: Int) -> Int { n == 1 ? 0 : (i < 0 ? -i : (i >= n ? 2 * n - 2 - i : i)) }
        var out = [Float](repeating: 0, count: h * w)
        for y in 0..<h {
            for x in 0..<w {
                var win: [Float] = []
                for dy in -1...1 { for dx in -1...1 { win.append(m[refl(y + dy, h) * w + refl(x + dx, w)]) } }
                out[y * w + x] = win.sorted()[4]
            }
        }
        return out
    }

    @Test(arguments: [UInt64(1), 2, 3, 4, 5, 6, 7, 8])
    func matchesNaiveOnRandomMaps(seed: UInt64) {
        var rng = SeededRandom(seed: seed)
        for _ in 0..<10 {
            let h = rng.int(in: 1...9), w = rng.int(in: 1...9)
            // values from a small set so that ties are frequent
            let m = (0..<(h * w)).map { _ in Float(rng.int(below: 5)) * 0.25 - (rng.bernoulli(0.3) ? rng.float() : 0) }
            let fast = MedianFilter.median3x3(maps: Matrix(rows: 1, cols: h * w, data: m), height: h, width: w)
            #expect(fast.data == Self.naive(m, h: h, w: w), "seed \(seed), \(h) x \(w)")
        }
    }

    /// Cross-check of the padding convention with SciPy (`mode="mirror"` is reflect-101), when python3 + scipy exist.
    @Test func matchesScipyMirror() throws {
        let h = 6, w = 7
        var rng = SeededRandom(seed: 99)
        let m = (0..<(h * w)).map { _ in rng.float() }
        let script = "import sys,json,numpy as n;from scipy.ndimage import median_filter as f;"
            + "a=n.array(json.loads(sys.stdin.read()),dtype=n.float32).reshape(\(h),\(w));"
            + "print(json.dumps([float(v) for v in f(a,size=3,mode='mirror').ravel()]))"
        let out = try runPython(script, stdin: "[" + m.map { "\($0)" }.joined(separator: ",") + "]")
        let ref = out.trimmingCharacters(in: .whitespacesAndNewlines)
            .trimmingCharacters(in: CharacterSet(charactersIn: "[]")).split(separator: ",")
            .map { Float($0.trimmingCharacters(in: .whitespaces))! }
        let fast = MedianFilter.median3x3(maps: Matrix(rows: 1, cols: h * w, data: m), height: h, width: w)
        #expect(fast.data == ref, "seed 99")
    }
}

import Foundation

/// Runs `python3 -c script` with `input` on stdin; nil when python3 or its modules are missing.
