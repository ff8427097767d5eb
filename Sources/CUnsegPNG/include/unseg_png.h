// Exact PNG sample reading through libpng's classic API (setjmp lives in the C file).
//
// libpng's simplified API (used elsewhere, Sources/CPNG) converts: 16-bit files are read as
// linear light and narrowed to sRGB, 1/2/4-bit grey is scaled to 0..255. Label maps and saliency
// maps written by other tools need the stored sample values themselves: grey levels, palette
// indices, 16-bit ids. These two calls give exactly those.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t width, height;
    /// Samples per pixel as read: 1 grey or palette index, 2 grey + alpha, 3 RGB, 4 RGBA.
    int channels;
    /// Bits per sample in the file: 1, 2, 4, 8 or 16 (palette files: bits per index).
    int bit_depth;
    /// 1 when the samples are palette indices (PNG colour type 3).
    int palette;
    /// 1 when the file is Adam7-interlaced.
    int interlaced;
} unseg_png_info;

/// Reads the header of `path`. Returns 1, or 0 with a message in `msg` (not a PNG, truncated, unreadable).
int unseg_png_read_info(const char *path, unseg_png_info *info, char *msg, size_t msg_len);

/// Reads every sample of `path` as stored (no gamma, no scaling, no palette expansion; 1/2/4-bit
/// values unpacked to one value each; 16-bit in native byte order) into `out`, which holds
/// `width * height * channels` values, pixels row by row, channels interleaved. The file must still
/// have the header `expect` (it is re-read). Returns 1, or 0 with a message in `msg`.
int unseg_png_read_samples(const char *path, const unseg_png_info *expect, uint16_t *out,
                           char *msg, size_t msg_len);
