import Testing

/// The tests' one tolerance check: `|actual - expected| <= abs + rel * |expected|`, recorded at the
/// caller's line (the source location is forwarded), with both values and the gap in the message.
public func expectClose(_ actual: Double, _ expected: Double, abs absTol: Double = 0, rel: Double = 0,
                        _ comment: @autoclosure () -> String = "", sourceLocation: SourceLocation = #_sourceLocation) {
    let gap = Swift.abs(actual - expected)
    let ok = gap <= absTol + rel * Swift.abs(expected) && !actual.isNaN && !expected.isNaN
    let what = comment()
    #expect(ok, "\(what.isEmpty ? "" : what + ": ")\(actual) vs \(expected) (|diff| \(gap), allowed \(absTol) + \(rel) x |expected|)",
            sourceLocation: sourceLocation)
}

/// `expectClose` for Float values.
public func expectClose(_ actual: Float, _ expected: Float, abs absTol: Double = 0, rel: Double = 0,
                        _ comment: @autoclosure () -> String = "", sourceLocation: SourceLocation = #_sourceLocation) {
    expectClose(Double(actual), Double(expected), abs: absTol, rel: rel, comment(), sourceLocation: sourceLocation)
}

/// Element-wise `expectClose` over two arrays of the same length; reports the worst element once.
public func expectAllClose<T: BinaryFloatingPoint>(_ actual: [T], _ expected: [T], abs absTol: Double = 0, rel: Double = 0,
                                                   _ comment: @autoclosure () -> String = "",
                                                   sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(actual.count == expected.count, "\(comment()): \(actual.count) values vs \(expected.count)", sourceLocation: sourceLocation)
    var worst = -1, worstExcess = 0.0
    for i in 0..<min(actual.count, expected.count) {
        let a = Double(actual[i]), e = Double(expected[i])
        let excess = Swift.abs(a - e) - (absTol + rel * Swift.abs(e))
        if excess > worstExcess || a.isNaN != e.isNaN { worst = i; worstExcess = Swift.max(excess, worstExcess) }
    }
    if worst >= 0 {
        expectClose(Double(actual[worst]), Double(expected[worst]), abs: absTol, rel: rel,
                    "\(comment()) [element \(worst) of \(actual.count)]", sourceLocation: sourceLocation)
    }
}
