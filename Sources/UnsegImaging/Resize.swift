import UnsegCore
import UnsegLinAlg

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

/// Resizing of images, label maps and float maps.
public enum Resize {
    /// Nearest-neighbour resize of a label map (ids are copied, never mixed). O(out pixels).
    public static func nearest(_ image: GrayImage, width: Int, height: Int,
                               mode: NearestMode = .halfPixel) -> GrayImage {
        GrayImage(width: width, height: height,
                  pixels: NearestResampler.resample(image.pixels, height: image.height, width: image.width,
                                                    toHeight: height, toWidth: width, mode: mode))
    }

    /// Nearest-neighbour resize of an RGB image (e.g. a coloured label map). O(out pixels).
    public static func nearest(_ image: RGBImage, width: Int, height: Int,
                               mode: NearestMode = .halfPixel) -> RGBImage {
        RGBImage(width: width, height: height,
                 pixels: NearestResampler.resample(image.pixels, height: image.height, width: image.width,
                                                   toHeight: height, toWidth: width, bytesPerPixel: 3, mode: mode))
    }

    /// Bilinear resize (align_corners=False) of a float map `[height, width, channels]`
    /// (channels interleaved, e.g. a patch-feature grid or class scores) to
    /// `[outHeight, outWidth, channels]` with the project's one bilinear kernel (`BilinearResampler`).
    /// O(out pixels * channels).
    public static func bilinear(_ data: [Float], width: Int, height: Int, channels: Int,
                                toWidth outW: Int, toHeight outH: Int) -> [Float] {
        precondition(data.count == width * height * channels && width > 0 && height > 0 && channels > 0,
                     "bilinear resize: data has \(data.count) values, expected \(height)x\(width)x\(channels)")
        precondition(outW > 0 && outH > 0, "bilinear resize: output size \(outW)x\(outH) must be positive")
        let r = BilinearResampler(sourceHeight: height, sourceWidth: width, targetHeight: outH, targetWidth: outW)
        return r.upsample(Matrix(rows: height * width, cols: channels, data: data)).data
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
