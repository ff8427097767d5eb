// Resizing: nearest neighbour for label maps, bilinear for images and float maps.
//
// Bilinear follows PyTorch's F.interpolate(mode="bilinear", align_corners=False) with an
// explicit output size: the source coordinate of output pixel d is
//     s = (d + 0.5) * in / out - 0.5, clamped below at 0,
// x0 = floor(s), x1 = min(x0 + 1, in - 1), weight of x1 = s - x0. Pixel centres, not
// corners, line up, so a 2x upsample neither shifts nor crops the image.
//
// Nearest uses the same half-pixel centres by default (PyTorch "nearest-exact", PIL NEAREST):
// source index floor((d + 0.5) * in / out), computed in exact integer arithmetic. PyTorch's
// legacy "nearest" (floor(d * in / out), shifted by half a pixel) is `.legacyFloor`.

/// How nearest-neighbour resizing picks the source pixel.
public enum NearestMode: Sendable {
    /// floor((d + 0.5) * in / out): pixel centres aligned (PyTorch "nearest-exact", PIL).
    case halfPixel
    /// floor(d * in / out): PyTorch's default "nearest" (and OpenCV INTER_NEAREST).
    case legacyFloor
}

/// Resizing of images, label maps and float maps.
public enum Resize {
    /// Source indices for nearest resizing from `input` to `output` samples along one axis.
    public static func nearestIndices(input: Int, output: Int, mode: NearestMode = .halfPixel) -> [Int] {
        (0..<output).map { d in
            let s: Int
            switch mode {
            case .halfPixel: s = ((2 * d + 1) * input) / (2 * output)
            case .legacyFloor: s = (d * input) / output
            }
            return min(s, input - 1)
        }
    }

    /// Bilinear taps along one axis: for each output index, (x0, x1, weight of x1).
    public static func bilinearTaps(input: Int, output: Int) -> [(Int, Int, Float)] {
        let scale = Double(input) / Double(output)
        return (0..<output).map { d in
            let s = max(0, (Double(d) + 0.5) * scale - 0.5)
            let x0 = min(Int(s), input - 1)
            let x1 = x0 < input - 1 ? x0 + 1 : x0
            return (x0, x1, Float(s - Double(x0)))
        }
    }

    /// Nearest-neighbour resize of a label map (ids are copied, never mixed). O(out pixels).
    public static func nearest(_ image: GrayImage, width: Int, height: Int,
                               mode: NearestMode = .halfPixel) -> GrayImage {
        precondition(width > 0 && height > 0 && image.width > 0 && image.height > 0,
                     "nearest resize needs non-empty sizes, got \(image.width)x\(image.height) -> \(width)x\(height)")
        let xs = nearestIndices(input: image.width, output: width, mode: mode)
        let ys = nearestIndices(input: image.height, output: height, mode: mode)
        var out = [UInt8](repeating: 0, count: width * height)
        image.pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for y in 0..<height {
                    let row = ys[y] * image.width
                    for x in 0..<width { dst[y * width + x] = src[row + xs[x]] }
                }
            }
        }
        return GrayImage(width: width, height: height, pixels: out)
    }

    /// Nearest-neighbour resize of an RGB image (e.g. a coloured label map). O(out pixels).
    public static func nearest(_ image: RGBImage, width: Int, height: Int,
                               mode: NearestMode = .halfPixel) -> RGBImage {
        precondition(width > 0 && height > 0 && image.width > 0 && image.height > 0,
                     "nearest resize needs non-empty sizes, got \(image.width)x\(image.height) -> \(width)x\(height)")
        let xs = nearestIndices(input: image.width, output: width, mode: mode)
        let ys = nearestIndices(input: image.height, output: height, mode: mode)
        var out = [UInt8](repeating: 0, count: width * height * 3)
        image.pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for y in 0..<height {
                    let row = ys[y] * image.width
                    for x in 0..<width {
                        let s = 3 * (row + xs[x]), d = 3 * (y * width + x)
                        dst[d] = src[s]; dst[d + 1] = src[s + 1]; dst[d + 2] = src[s + 2]
                    }
                }
            }
        }
        return RGBImage(width: width, height: height, pixels: out)
    }

    /// Bilinear resize (align_corners=False) of a float map `[height, width, channels]`
    /// (channels interleaved, e.g. a patch-feature grid or class scores) to
    /// `[outHeight, outWidth, channels]`. O(out pixels * channels).
    public static func bilinear(_ data: [Float], width: Int, height: Int, channels: Int,
                                toWidth outW: Int, toHeight outH: Int) -> [Float] {
        precondition(data.count == width * height * channels && width > 0 && height > 0 && channels > 0,
                     "bilinear resize: data has \(data.count) values, expected \(height)x\(width)x\(channels)")
        precondition(outW > 0 && outH > 0, "bilinear resize: output size \(outW)x\(outH) must be positive")
        let xt = bilinearTaps(input: width, output: outW)
        let yt = bilinearTaps(input: height, output: outH)
        var out = [Float](repeating: 0, count: outW * outH * channels)
        data.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for y in 0..<outH {
                    let (y0, y1, wy) = yt[y]
                    let r0 = y0 * width * channels, r1 = y1 * width * channels
                    for x in 0..<outW {
                        let (x0, x1, wx) = xt[x]
                        let a = r0 + x0 * channels, b = r0 + x1 * channels
                        let c = r1 + x0 * channels, d = r1 + x1 * channels
                        let o = (y * outW + x) * channels
                        for k in 0..<channels {
                            let top = src[a + k] + (src[b + k] - src[a + k]) * wx
                            let bot = src[c + k] + (src[d + k] - src[c + k]) * wx
                            dst[o + k] = top + (bot - top) * wy
                        }
                    }
                }
            }
        }
        return out
    }

    /// Bilinear resize (align_corners=False) of an RGB image; results rounded to nearest.
    public static func bilinear(_ image: RGBImage, width: Int, height: Int) -> RGBImage {
        let f = bilinear(image.pixels.map(Float.init), width: image.width, height: image.height,
                         channels: 3, toWidth: width, toHeight: height)
        return RGBImage(width: width, height: height, pixels: f.map { UInt8(min(max($0.rounded(), 0), 255)) })
    }

    /// Bilinear resize (align_corners=False) of a gray image (not for label maps: use `nearest`).
    public static func bilinear(_ image: GrayImage, width: Int, height: Int) -> GrayImage {
        let f = bilinear(image.pixels.map(Float.init), width: image.width, height: image.height,
                         channels: 1, toWidth: width, toHeight: height)
        return GrayImage(width: width, height: height, pixels: f.map { UInt8(min(max($0.rounded(), 0), 255)) })
    }
}
