/// The result of a linear assignment: which row goes with which column.
///
/// For a `[rows, cols]` cost matrix, `min(rows, cols)` pairs are assigned. The pairs
/// are listed by increasing row (`rowIndices` ascending), as scipy does.
public struct Assignment: Equatable, Sendable {
    /// Rows of the assigned pairs, ascending; `count == min(rows, cols)`.
    public var rowIndices: [Int]
    /// Columns of the assigned pairs, `colIndices[k]` goes with `rowIndices[k]`.
    public var colIndices: [Int]
    /// For each row, its column or -1 if the row is unassigned (`[rows]`).
    public var columnForRow: [Int]
    /// For each column, its row or -1 if the column is unassigned (`[cols]`).
    public var rowForColumn: [Int]
    /// Sum of the cost entries of the assigned pairs (in the original sign).
    public var total: Double
}

/// Exact rectangular linear assignment (minimise or maximise a summed cost).
///
/// Algorithm: the shortest augmenting path method of Jonker and Volgenant, in the
/// rectangular form of D. F. Crouse, "On implementing 2D rectangular assignment
/// algorithms", IEEE Trans. Aerospace and Electronic Systems 52(4):1679-1696, 2016 -
/// the algorithm behind scipy's `linear_sum_assignment`. Rows are added one at a time;
/// each step runs a Dijkstra-like search over reduced costs `c[i,j] - u[i] - v[j]`
/// for the cheapest augmenting path to a free column, then updates the duals. All
/// arithmetic is in Double; the result is an exact optimum for finite costs.
///
/// Shapes: `cost` is `[rows, cols]` row-major Double. A tall matrix (rows > cols)
/// is solved on its transpose, so every column is assigned; a wide one assigns every
/// row. Complexity: O(min^2 * max) time worst case, O(rows * cols) memory for the
/// (possibly transposed, negated) copy.
///
/// Determinism and tie breaking (same rule as scipy): the search scans free
/// columns in a fixed order for each new row and, among columns with equal path
/// length, takes the first one scanned unless a later one that ends the path (an
/// unassigned column) ties, which is then preferred. With a constant cost matrix,
/// row `i` therefore gets column `i` (the identity), also for rectangular shapes
/// (`min(rows, cols)` pairs `(i, i)`). Single-threaded, so thread count is irrelevant.
///
/// Errors: `EvaluationError` kind `non-finite-cost` naming the first NaN or infinite
/// entry by row and column; `bad-shape` if `cost.count != rows * cols` or a
/// dimension is negative. An empty dimension gives an empty assignment.
public enum LinearAssignment {
    /// Solves the assignment for a row-major `[rows, cols]` Double cost matrix.
    public static func solve(cost: [Double], rows: Int, cols: Int, maximize: Bool = false) throws -> Assignment {
        guard rows >= 0, cols >= 0, cost.count == rows * cols else {
            throw EvaluationError("bad-shape",
                "linear assignment: cost has \(cost.count) entries but rows=\(rows) x cols=\(cols) = \(rows * cols); pass a row-major [rows, cols] matrix")
        }
        if let bad = cost.firstIndex(where: { !$0.isFinite }) {
            let i = bad / cols, j = bad % cols
            throw EvaluationError("non-finite-cost",
                "linear assignment: cost[row \(i), col \(j)] = \(cost[bad]) is not finite (matrix \(rows)x\(cols)); replace NaN/infinite entries with finite values (e.g. a large finite penalty)")
        }
        var columnForRow = [Int](repeating: -1, count: rows)
        var rowForColumn = [Int](repeating: -1, count: cols)
        if rows == 0 || cols == 0 {
            return Assignment(rowIndices: [], colIndices: [], columnForRow: columnForRow,
                              rowForColumn: rowForColumn, total: 0)
        }
        // The kernel assigns every row of a wide (nr <= nc) matrix.
        let transpose = rows > cols
        let nr = transpose ? cols : rows
        let nc = transpose ? rows : cols
        var work = [Double](repeating: 0, count: nr * nc)
        let sign: Double = maximize ? -1 : 1
        cost.withUnsafeBufferPointer { src in
            work.withUnsafeMutableBufferPointer { dst in
                if transpose {
                    for i in 0..<rows {
                        for j in 0..<cols { dst[j * rows + i] = sign * src[i * cols + j] }
                    }
                } else {
                    for k in 0..<(rows * cols) { dst[k] = sign * src[k] }
                }
            }
        }
        let col4row = kernel(work, nr: nr, nc: nc)
        if transpose {
            // Kernel row r is original column r; kernel column is original row.
            for r in 0..<nr {
                columnForRow[col4row[r]] = r
                rowForColumn[r] = col4row[r]
            }
        } else {
            for r in 0..<nr {
                columnForRow[r] = col4row[r]
                rowForColumn[col4row[r]] = r
            }
        }
        var rowIndices: [Int] = []
        var colIndices: [Int] = []
        rowIndices.reserveCapacity(nr)
        colIndices.reserveCapacity(nr)
        var total = 0.0
        for i in 0..<rows where columnForRow[i] >= 0 {
            rowIndices.append(i)
            colIndices.append(columnForRow[i])
            total += cost[i * cols + columnForRow[i]]
        }
        return Assignment(rowIndices: rowIndices, colIndices: colIndices, columnForRow: columnForRow,
                          rowForColumn: rowForColumn, total: total)
    }

    /// Solves the assignment for a nested `[[Double]]` cost matrix (rows of equal length).
    ///
    /// Errors: as `solve(cost:rows:cols:maximize:)`, plus `bad-shape` for ragged rows.
    public static func solve(_ cost: [[Double]], maximize: Bool = false) throws -> Assignment {
        let rows = cost.count
        let cols = cost.first?.count ?? 0
        for (i, r) in cost.enumerated() where r.count != cols {
            throw EvaluationError("bad-shape",
                "linear assignment: row \(i) has \(r.count) entries but row 0 has \(cols); pass a rectangular matrix")
        }
        return try solve(cost: cost.flatMap { $0 }, rows: rows, cols: cols, maximize: maximize)
    }

    /// The Crouse / Jonker-Volgenant kernel for a finite, wide (nr <= nc) minimisation
    /// problem. Returns the column of each row (`[nr]`).
    static func kernel(_ cost: [Double], nr: Int, nc: Int) -> [Int] {
        precondition(nr <= nc && cost.count == nr * nc,
                     "kernel needs nr <= nc, got \(nr)x\(nc) with \(cost.count) entries")
        var u = [Double](repeating: 0, count: nr)
        var v = [Double](repeating: 0, count: nc)
        var shortest = [Double](repeating: .infinity, count: nc)
        var path = [Int](repeating: -1, count: nc)
        var col4row = [Int](repeating: -1, count: nr)
        var row4col = [Int](repeating: -1, count: nc)
        var inSR = [Bool](repeating: false, count: nr)
        var inSC = [Bool](repeating: false, count: nc)
        var remaining = [Int](repeating: 0, count: nc)

        cost.withUnsafeBufferPointer { c in
        u.withUnsafeMutableBufferPointer { u in
        v.withUnsafeMutableBufferPointer { v in
        shortest.withUnsafeMutableBufferPointer { sp in
        path.withUnsafeMutableBufferPointer { path in
        col4row.withUnsafeMutableBufferPointer { col4row in
        row4col.withUnsafeMutableBufferPointer { row4col in
        inSR.withUnsafeMutableBufferPointer { inSR in
        inSC.withUnsafeMutableBufferPointer { inSC in
        remaining.withUnsafeMutableBufferPointer { remaining in
            for curRow in 0..<nr {
                // --- shortest augmenting path from curRow ---
                var minVal = 0.0
                var numRemaining = nc
                // Filled in reverse so that, with the swap-remove below, a constant
                // matrix yields the identity (scipy issue #11602).
                for it in 0..<nc { remaining[it] = nc - it - 1 }
                for k in 0..<nr { inSR[k] = false }
                for k in 0..<nc { inSC[k] = false; sp[k] = .infinity }
                var i = curRow
                var sink = -1
                while sink == -1 {
                    var index = -1
                    var lowest = Double.infinity
                    inSR[i] = true
                    let rowBase = i * nc
                    let ui = u[i]
                    for it in 0..<numRemaining {
                        let j = remaining[it]
                        // Same evaluation order as scipy's rectangular_lsap.cpp.
                        let r = minVal + c[rowBase + j] - ui - v[j]
                        if r < sp[j] {
                            path[j] = i
                            sp[j] = r
                        }
                        let s = sp[j]
                        // Among equal lengths prefer a free column: it ends the path.
                        if s < lowest || (s == lowest && row4col[j] == -1) {
                            lowest = s
                            index = it
                        }
                    }
                    // Costs are finite, so some column is always reachable (index >= 0).
                    minVal = lowest
                    let j = remaining[index]
                    if row4col[j] == -1 {
                        sink = j
                    } else {
                        i = row4col[j]
                    }
                    inSC[j] = true
                    numRemaining -= 1
                    remaining[index] = remaining[numRemaining]
                }
                // --- dual update ---
                u[curRow] += minVal
                for k in 0..<nr where inSR[k] && k != curRow {
                    u[k] += minVal - sp[col4row[k]]
                }
                for k in 0..<nc where inSC[k] {
                    v[k] -= minVal - sp[k]
                }
                // --- augment along the path ---
                var j = sink
                while true {
                    let pi = path[j]
                    row4col[j] = pi
                    let prev = col4row[pi]
                    col4row[pi] = j
                    j = prev
                    if pi == curRow { break }
                }
            }
        }}}}}}}}}}
        return col4row
    }
}
