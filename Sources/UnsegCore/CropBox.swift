import UnsegLinAlg

/// A zoomed-in crop of an image (the Two Tricks paper's multi-scale views): `x0, y0, x1, y1` in
/// pixels of the stored image, exclusive ends, as `/crop_boxes` holds them. The crop's features
/// come from the box resized to the full input size, so they lie on a grid as large as the full
/// image's.
public struct CropBox: Sendable, Equatable, Hashable {
    public var x0: Float, y0: Float, x1: Float, y1: Float
    public init(x0: Float, y0: Float, x1: Float, y1: Float) { self.x0 = x0; self.y0 = y0; self.x1 = x1; self.y1 = y1 }

    public var width: Float { x1 - x0 }
    public var height: Float { y1 - y0 }

    /// Why this box cannot be a crop of a `width x height` image with patches of `patch` pixels
    /// (non-finite, outside the image, a side under one patch), or nil when it can.
    public func problem(width w: Int, height h: Int, patch: Int) -> String? {
        guard x0.isFinite, y0.isFinite, x1.isFinite, y1.isFinite else { return "not finite" }
        guard x0 >= 0, y0 >= 0, x1 <= Float(w), y1 <= Float(h) else { return "outside the \(w)x\(h) image" }
        guard x1 > x0, y1 > y0 else { return "empty (x1 <= x0 or y1 <= y0)" }
        guard x1 - x0 >= Float(patch), y1 - y0 >= Float(patch) else { return "a side under one patch (\(patch) pixels)" }
        return nil
    }

    /// The box of crop `crop` of image `image` of a square `size`-pixel image: side `round(u size)`
    /// pixels with `u` uniform in `scale` (at least one patch, at most the image), origin uniform over
    /// the integer positions inside. A pure function of its arguments (unseg's own generator; the
    /// extractor draws its boxes with numpy's and stores them).
    public static func draw(seed: UInt64, image: Int, crop: Int, size: Int, patch: Int, scale: ClosedRange<Double>) -> CropBox {
        var r = SeededRandom.stream(seed: seed ^ 0x4352_4F50_0000_0000, index: UInt64(image) << 16 | UInt64(crop))
        let u = scale.upperBound > scale.lowerBound ? scale.lowerBound + (scale.upperBound - scale.lowerBound) * Double(r.float()) : scale.lowerBound
        let side = min(size, max(patch, Int((u * Double(size)).rounded())))
        let x0 = r.int(below: size - side + 1), y0 = r.int(below: size - side + 1)
        return CropBox(x0: Float(x0), y0: Float(y0), x1: Float(x0 + side), y1: Float(y0 + side))
    }

    /// The student's map on the full `h x w` grid cropped to this box and bilinearly upsampled to the
    /// crop's `cropHeight x cropWidth` grid: crop cell `(Y, X)` samples the full map's bilinear
    /// interpolant (`align_corners=False`, clamped at the image border) at its centre,
    /// `x0 + (X + 0.5) (x1 - x0) / cropWidth` pixels, i.e. `that / patch - 0.5` cells. For a box on
    /// cell boundaries this is cropping the cells and `F.interpolate`-ing them, away from the box's
    /// edge (where the crop would clamp and this reads the cells beyond it). Linear, with the exact
    /// adjoint `upsampleAdjoint` for the gradient.
    public func resampler(gridHeight h: Int, gridWidth w: Int, patch: Int, cropHeight: Int, cropWidth: Int) -> BilinearResampler {
        let p = Double(patch)
        return BilinearResampler(rows: BilinearAxis(source: h, target: cropHeight, start: Double(y0) / p, span: Double(y1 - y0) / p),
                                 cols: BilinearAxis(source: w, target: cropWidth, start: Double(x0) / p, span: Double(x1 - x0) / p))
    }
}
