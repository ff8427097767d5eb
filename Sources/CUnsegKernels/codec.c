// Decoding of HDF5 chunks on worker threads: zlib inflate (the deflate filter) and unshuffle.
#include "unseg_kernels.h"
#include <string.h>
#include <zlib.h>

int unseg_inflate(const unsigned char *src, size_t src_len, unsigned char *dst, size_t dst_len) {
    z_stream s;
    memset(&s, 0, sizeof s);
    if (inflateInit(&s) != Z_OK) return -1;
    s.next_in = (unsigned char *)src;
    s.avail_in = (uInt)src_len;
    s.next_out = dst;
    s.avail_out = (uInt)dst_len;
    int rc = inflate(&s, Z_FINISH);
    size_t produced = dst_len - s.avail_out;
    inflateEnd(&s);
    return (rc == Z_STREAM_END && produced == dst_len) ? 0 : -1;
}

void unseg_unshuffle(const unsigned char *src, unsigned char *dst, size_t count, size_t size, size_t total) {
    if (size == 1) { memcpy(dst, src, total); return; }
    for (size_t b = 0; b < size; b++) {
        const unsigned char *plane = src + b * count;
        for (size_t i = 0; i < count; i++) dst[i * size + b] = plane[i];
    }
    if (total > count * size) memcpy(dst + count * size, src + count * size, total - count * size);
}
