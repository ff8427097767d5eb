/// File names for per-image outputs (exported PNGs, overlays, report samples): one rule for the
/// whole project.
public enum FileNames {
    /// Longest stem, in UTF-8 bytes, before a name is shortened (file systems allow 255 bytes per
    /// name; this leaves room for a suffix such as `_color.png`).
    public static let maxStemBytes = 96

    /// File-system-safe, unique stems for `raw` names, in order:
    /// - path separators (`/`, `\`), `:`, control characters and the Unicode replacement
    ///   character (what undecodable bytes became) turn into `_`; leading dots are dropped;
    /// - an empty name becomes the image index (`000042`);
    /// - a stem longer than `maxStemBytes` keeps its first characters and gets a stable suffix
    ///   `~` + 8 hex digits of a 64-bit FNV-1a hash of the original name;
    /// - a duplicate gets `_` + its image index appended (the first occurrence keeps its stem).
    /// Deterministic; O(total length).
    public static func stems(_ raw: [String]) -> [String] {
        var seen = Set<String>()
        return raw.enumerated().map { i, name in
            var s = String(name.unicodeScalars.map { u -> Character in
                let bad = u == "/" || u == "\\" || u == ":" || u.value < 32 || u.value == 127 || u == "\u{FFFD}"
                return bad ? "_" : Character(u)
            })
            while s.hasPrefix(".") { s.removeFirst() }
            if s.isEmpty { s = index(i) }
            if s.utf8.count > maxStemBytes {
                var cut = ""
                for ch in s {
                    if cut.utf8.count + String(ch).utf8.count > maxStemBytes - 9 { break }
                    cut.append(ch)
                }
                s = cut + "~" + hex8(fnv1a(name))
            }
            if seen.contains(s) { s += "_" + index(i) }
            seen.insert(s)
            return s
        }
    }

    static func index(_ i: Int) -> String {
        let d = String(i)
        return String(repeating: "0", count: max(0, 6 - d.count)) + d
    }

    static func hex8(_ h: UInt64) -> String {
        let s = String(h >> 32, radix: 16)
        return String(repeating: "0", count: 8 - s.count) + s
    }

    /// 64-bit FNV-1a over the UTF-8 bytes of `s`.
    public static func fnv1a(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return h
    }
}
