import Foundation
import UnsegCore
import UnsegImaging
import UnsegStore

/// Pictures of mask proposals for a look: per image, side by side, the photo, the
/// feature-resolution masks over it, and the refined masks over it when the file has them.
public enum ProposalOverlays {
    /// Writes `<dir>/<name>.png` for the first `count` images (names from the store's `/names`,
    /// with `/` and other unsafe characters replaced by `_`). Masks are coloured with the VOC
    /// `Palette.distinct` colours (mask k gets colour k; background 0 is left uncoloured), alpha 0.55, white
    /// segment boundaries. Returns the paths written.
    /// - Throws: `StoreError` when the store has no `/images` or a read fails; file errors from PNG.
    /// - Complexity: O(count * H * W).
    public static func write(store: FeatureStore, proposals: ProposalsFile, to dir: String, count: Int) throws -> [String] {
        let l = store.layout
        guard l.hasImages else {
            throw StoreError(file: store.path, dataset: "/images", "missing; overlays need the RGB images in the store (drop --overlays)")
        }
        let folder = try AtomicDirectory(path: dir, option: "--overlays")
        let stems = FileNames.stems(try store.names())
        let palette = Palette.distinct(count: 256)
        var written: [String] = []
        for i in 0..<min(count, l.imageCount) {
            let photo = RGBImage(width: l.imageWidth, height: l.imageHeight, pixels: try store.image(i))
            let masks = try proposals.masks(i)
            let k = Set(masks).subtracting([0]).count
            let coarse = LabelMap(width: l.gridWidth, height: l.gridHeight, pixels: masks)
            var panels = [photo, Composite.overlay(image: photo, labels: coarse, palette: palette, alpha: 0.55, transparent: [0, 255])]
            var titles = ["image", "masks \(l.gridWidth)x\(l.gridHeight) (\(k) shown)"]
            if let r = try proposals.refined(i) {
                let fine = LabelMap(width: l.imageWidth, height: l.imageHeight, pixels: r)
                panels.append(Composite.overlay(image: photo, labels: fine, palette: palette, alpha: 0.55, transparent: [0, 255]))
                titles.append("refined (\(proposals.refine))")
            }
            let picture = Composite.sideBySide(panels, titles: titles)
            try PNG.write(picture, to: folder.path(stems[i] + ".png"))
            written.append((dir as NSString).appendingPathComponent(stems[i] + ".png"))
        }
        try folder.commit()
        return written
    }
}
