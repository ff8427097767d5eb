import Foundation
import Testing
import UnsegTestSupport
import UnsegLinAlg
@testable import UnsegEvaluation

@Suite struct LinearAssignmentTests {
    @Test func handComputed() throws {
        // Classic 3x3 example: optimum 1 + 2 + 2 = 5 via (0,1), (1,0), (2,2).
        let c: [[Double]] = [[4, 1, 3], [2, 0, 5], [3, 2, 2]]
        let a = try LinearAssignment.solve(c)
        #expect(a.total == 5)
        #expect(a.colIndices == [1, 0, 2])
        let m = try LinearAssignment.solve(c, maximize: true)
        // Maximum: 4 + 5 + 2 = 11 via (0,0), (1,2), (2,1).
        #expect(m.total == 11)
        #expect(m.colIndices == [0, 2, 1])
    }

    @Test func bruteForceUpTo7x7() throws {
        // All shapes rows, cols in 1...7, 12 matrices each: half continuous, half small
        // integers (many ties), alternately minimised and maximised.
        let seed: UInt64 = 20240601
        var rng = SeededRandom(seed: seed)
        var checked = 0
        for rows in 1...7 {
            for cols in 1...7 {
                for rep in 0..<12 {
                    let integer = rep % 2 == 0
                    let maximize = (rep / 2) % 2 == 0
                    let cost = (0..<(rows * cols)).map { _ in
                        integer ? Double(rng.int(below: 4)) : rng.double() * 10 - 3
                    }
                    let ctx = "seed \(seed) \(rows)x\(cols) rep \(rep) max \(maximize) cost \(cost)"
                    let a = try LinearAssignment.solve(cost: cost, rows: rows, cols: cols, maximize: maximize)
                    checkValid(a, cost, rows: rows, cols: cols, context: ctx)
                    let best = bruteForceOptimum(cost, rows: rows, cols: cols, maximize: maximize)
                    // Sums of at most 7 terms in different orders: rounding below 1e-12.
                    #expect(abs(a.total - best) <= 1e-12 * max(1, abs(best)), "\(ctx): got \(a.total), brute force \(best)")
                    checked += 1
                }
            }
        }
        #expect(checked == 49 * 12)
    }

    @Test func agreesWithScipy() throws {
        // 1,210 seeded matrices: square and rectangular (tall and wide), continuous and
        // integer-valued with many ties, minimised and maximised, plus a few large ones.
        let seed: UInt64 = 7_000_001
        var rng = SeededRandom(seed: seed)
        struct Case { var rows: Int; var cols: Int; var maximize: Bool; var integer: Bool; var cost: [Double] }
        var cases: [Case] = []
        for idx in 0..<1200 {
            let kind = idx % 4
            var rows = rng.int(in: 1...40), cols = rng.int(in: 1...40)
            if kind == 0 { cols = rows }
            if kind == 1 && rows == cols { cols = rows + 1 + rng.int(below: 10) }
            if kind == 1 && idx % 8 == 1 { swap(&rows, &cols) }
            let integer = kind >= 2
            let range = kind == 2 ? 3 : 100
            let cost: [Double] = (0..<(rows * cols)).map { _ in
                integer ? Double(rng.int(in: (kind == 3 ? -range : 0)...range)) : rng.double() * 1000 - 200
            }
            cases.append(Case(rows: rows, cols: cols, maximize: idx % 3 == 0, integer: integer, cost: cost))
        }
        for (r, c) in [(200, 200), (300, 27), (27, 300), (150, 150), (120, 60)] as [(Int, Int)] {
            for integer in [false, true] {
                let cost = (0..<(r * c)).map { _ in integer ? Double(rng.int(below: 5)) : rng.double() }
                cases.append(Case(rows: r, cols: c, maximize: integer, integer: integer, cost: cost))
            }
        }
        let dir = try makeTempDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var text = "\(cases.count)\n"
        for c in cases {
            text += "\(c.rows) \(c.cols) \(c.maximize ? 1 : 0)\n"
            text += c.cost.map { "\($0)" }.joined(separator: " ") + "\n"
        }
        let file = dir.appendingPathComponent("matrices.txt")
        try text.write(to: file, atomically: true, encoding: .utf8)
        let script = """
        import sys, numpy as np
        from scipy.optimize import linear_sum_assignment
        f = open(sys.argv[1]); n = int(f.readline())
        for _ in range(n):
            r, c, mx = map(int, f.readline().split())
            a = np.array([float(x) for x in f.readline().split()]).reshape(r, c)
            ri, ci = linear_sum_assignment(a, maximize=bool(mx))
            print(repr(float(a[ri, ci].sum())), ' '.join(map(str, ci)))
        """
        let lines = try runPython(script, args: [file.path]).split(separator: "\n", omittingEmptySubsequences: false)
        try #require(lines.count >= cases.count, "python printed \(lines.count) lines for \(cases.count) matrices")
        var sameAssignment = 0
        for (idx, c) in cases.enumerated() {
            let parts = lines[idx].split(separator: " ")
            let scipyTotal = try #require(Double(String(parts[0])))
            let scipyCols = parts.dropFirst().map { Int(String($0))! }
            let a = try LinearAssignment.solve(cost: c.cost, rows: c.rows, cols: c.cols, maximize: c.maximize)
            let ctx = "seed \(seed) case \(idx) \(c.rows)x\(c.cols) max \(c.maximize) integer \(c.integer)"
            checkValid(a, c.cost, rows: c.rows, cols: c.cols, context: ctx)
            if c.integer {
                // Integer sums far below 2^53 are exact in Double in any order.
                #expect(a.total == scipyTotal, "\(ctx): ours \(a.total), scipy \(scipyTotal)")
            } else {
                // Up to 300 terms of magnitude <= 1000 summed in different orders:
                // relative rounding below 1e-12.
                #expect(abs(a.total - scipyTotal) <= 1e-12 * max(1, abs(scipyTotal)), "\(ctx): ours \(a.total), scipy \(scipyTotal)")
            }
            if a.colIndices == scipyCols { sameAssignment += 1 }
        }
        // Same algorithm and tie breaking as scipy: even with ties the pairs coincide.
        #expect(sameAssignment == cases.count, "seed \(seed): identical assignments in \(sameAssignment) of \(cases.count)")
    }

    @Test(arguments: [(5, 5), (7, 3), (3, 7), (1, 4), (27, 27), (50, 27)])
    func constantMatrixIsIdentity(shape: (Int, Int)) throws {
        let (rows, cols) = shape
        for maximize in [false, true] {
            for value in [0.0, 3.5, -2.0] {
                let cost = [Double](repeating: value, count: rows * cols)
                let a = try LinearAssignment.solve(cost: cost, rows: rows, cols: cols, maximize: maximize)
                let m = min(rows, cols)
                #expect(a.rowIndices == Array(0..<m), "\(rows)x\(cols) value \(value) max \(maximize)")
                #expect(a.colIndices == Array(0..<m), "\(rows)x\(cols) value \(value) max \(maximize)")
            }
        }
    }

    @Test func nonFiniteRejectedWithPosition() throws {
        for bad in [Double.nan, .infinity, -.infinity] {
            var cost = [Double](repeating: 1, count: 12)
            cost[1 * 4 + 2] = bad  // row 1, col 2 of a 3x4 matrix
            for maximize in [false, true] {
                do {
                    _ = try LinearAssignment.solve(cost: cost, rows: 3, cols: 4, maximize: maximize)
                    Issue.record("\(bad) was accepted")
                } catch let e as EvaluationError {
                    #expect(e.kind == "non-finite-cost")
                    #expect(e.description.contains("row 1, col 2"), "message: \(e)")
                }
            }
        }
    }

    @Test func badShapeAndEmpty() throws {
        #expect(throws: EvaluationError.self) { try LinearAssignment.solve(cost: [1, 2, 3], rows: 2, cols: 2) }
        #expect(throws: EvaluationError.self) { try LinearAssignment.solve([[1, 2], [3]]) }
        let e = try LinearAssignment.solve(cost: [], rows: 0, cols: 5)
        #expect(e.rowIndices.isEmpty && e.rowForColumn == [-1, -1, -1, -1, -1] && e.total == 0)
    }

}
