// See include/unseg_png.h. libpng reports errors by longjmp to the setjmp in each call; every
// resource (FILE, read structs, row buffer) is reachable from a volatile or heap location so it is
// released on that path too. Warnings are dropped (a sample reader has no one to tell).
#include "unseg_png.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    jmp_buf jump;
    char message[256];
} reader_error;

static void on_error(png_structp png, png_const_charp text) {
    reader_error *e = (reader_error *)png_get_error_ptr(png);
    snprintf(e->message, sizeof e->message, "%s", text ? text : "libpng error");
    longjmp(e->jump, 1);
}

static void on_warning(png_structp png, png_const_charp text) {
    (void)png;
    (void)text;
}

static void set_message(char *msg, size_t len, const char *text) {
    if (msg && len) snprintf(msg, len, "%s", text);
}

typedef struct {
    FILE *file;
    png_structp png;
    png_infop info;
    png_bytep image;
    png_bytepp rows;
} reader;

static void reader_close(reader *r) {
    if (r->png) png_destroy_read_struct(&r->png, r->info ? &r->info : NULL, NULL);
    if (r->file) fclose(r->file);
    free(r->image);
    free(r->rows);
    memset(r, 0, sizeof *r);
}

// Opens the file and checks the signature. Returns 1 or 0 with a message.
static int reader_open(reader *r, const char *path, reader_error *err, char *msg, size_t msg_len) {
    memset(r, 0, sizeof *r);
    r->file = fopen(path, "rb");
    if (!r->file) {
        set_message(msg, msg_len, "cannot open the file");
        return 0;
    }
    unsigned char sig[8];
    if (fread(sig, 1, 8, r->file) != 8 || png_sig_cmp(sig, 0, 8) != 0) {
        set_message(msg, msg_len, "not a PNG file (no PNG signature)");
        reader_close(r);
        return 0;
    }
    r->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, err, on_error, on_warning);
    if (r->png) r->info = png_create_info_struct(r->png);
    if (!r->png || !r->info) {
        set_message(msg, msg_len, "libpng could not allocate its read structures");
        reader_close(r);
        return 0;
    }
    png_init_io(r->png, r->file);
    png_set_sig_bytes(r->png, 8);
    // Large label maps are legitimate; the default limits (1M x 1M) stay.
    return 1;
}

static void fill_info(reader *r, unseg_png_info *info) {
    int color = png_get_color_type(r->png, r->info);
    info->width = png_get_image_width(r->png, r->info);
    info->height = png_get_image_height(r->png, r->info);
    info->bit_depth = png_get_bit_depth(r->png, r->info);
    info->palette = color == PNG_COLOR_TYPE_PALETTE;
    info->interlaced = png_get_interlace_type(r->png, r->info) != PNG_INTERLACE_NONE;
    switch (color) {
    case PNG_COLOR_TYPE_GRAY: info->channels = 1; break;
    case PNG_COLOR_TYPE_PALETTE: info->channels = 1; break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: info->channels = 2; break;
    case PNG_COLOR_TYPE_RGB: info->channels = 3; break;
    default: info->channels = 4; break;
    }
}

int unseg_png_read_info(const char *path, unseg_png_info *info, char *msg, size_t msg_len) {
    reader_error err;
    reader r;
    memset(info, 0, sizeof *info);
    if (!reader_open(&r, path, &err, msg, msg_len)) return 0;
    reader *volatile rp = &r;
    if (setjmp(err.jump)) {
        set_message(msg, msg_len, err.message);
        reader_close(rp);
        return 0;
    }
    png_read_info(r.png, r.info);
    fill_info(&r, info);
    reader_close(&r);
    return 1;
}

int unseg_png_read_samples(const char *path, const unseg_png_info *expect, uint16_t *out,
                           char *msg, size_t msg_len) {
    reader_error err;
    reader r;
    if (!reader_open(&r, path, &err, msg, msg_len)) return 0;
    reader *volatile rp = &r;
    if (setjmp(err.jump)) {
        set_message(msg, msg_len, err.message);
        reader_close(rp);
        return 0;
    }
    png_read_info(r.png, r.info);
    unseg_png_info now;
    fill_info(&r, &now);
    if (now.width != expect->width || now.height != expect->height || now.channels != expect->channels ||
        now.bit_depth != expect->bit_depth || now.palette != expect->palette) {
        set_message(msg, msg_len, "the file changed while it was being read (its header differs)");
        reader_close(&r);
        return 0;
    }
    if (now.bit_depth < 8) png_set_packing(r.png);  // one value per byte, not scaled
    if (now.bit_depth == 16) png_set_swap(r.png);   // PNG is big-endian; this stores native order
    int passes = png_set_interlace_handling(r.png);
    (void)passes;
    png_read_update_info(r.png, r.info);
    size_t rowbytes = png_get_rowbytes(r.png, r.info);
    size_t h = now.height, w = now.width, c = (size_t)now.channels;
    size_t bytes_per_sample = now.bit_depth == 16 ? 2 : 1;
    if (rowbytes != w * c * bytes_per_sample) {
        set_message(msg, msg_len, "unexpected row size after unpacking");
        reader_close(&r);
        return 0;
    }
    if (h != 0 && rowbytes > SIZE_MAX / h) {
        set_message(msg, msg_len, "image too large");
        reader_close(&r);
        return 0;
    }
    rp->image = (png_bytep)malloc(rowbytes * h);
    rp->rows = (png_bytepp)malloc(sizeof(png_bytep) * (h ? h : 1));
    if (!r.image || !r.rows) {
        set_message(msg, msg_len, "out of memory for the image");
        reader_close(&r);
        return 0;
    }
    for (size_t y = 0; y < h; y++) r.rows[y] = r.image + y * rowbytes;
    png_read_image(r.png, r.rows);
    png_read_end(r.png, NULL);
    size_t n = w * h * c;
    if (bytes_per_sample == 2) {
        memcpy(out, r.image, n * 2);
    } else {
        for (size_t i = 0; i < n; i++) out[i] = r.image[i];
    }
    reader_close(&r);
    return 1;
}
