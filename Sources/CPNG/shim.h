// libpng's simplified API (png_image_*), which needs no setjmp.
#pragma once
#include <png.h>

static inline png_uint_32 unseg_png_image_version(void) { return PNG_IMAGE_VERSION; }
static inline png_uint_32 unseg_png_format_gray(void) { return PNG_FORMAT_GRAY; }
static inline png_uint_32 unseg_png_format_rgb(void) { return PNG_FORMAT_RGB; }
static inline png_uint_32 unseg_png_format_rgba(void) { return PNG_FORMAT_RGBA; }
static inline png_uint_32 unseg_png_format_rgb_colormap(void) { return PNG_FORMAT_RGB_COLORMAP; }
static inline int unseg_png_image_failed(png_imagep image) { return PNG_IMAGE_FAILED(*image); }
static inline png_uint_32 unseg_png_image_size(png_imagep image) { return PNG_IMAGE_SIZE(*image); }
static inline png_uint_32 unseg_png_image_row_stride(png_imagep image) { return PNG_IMAGE_ROW_STRIDE(*image); }
