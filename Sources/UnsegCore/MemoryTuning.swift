import CUnsegKernels

/// Process-wide allocator settings for the command-line tools (not set by the library: a program
/// embedding unseg keeps its own).
public enum MemoryTuning {
    /// Serves buffers of up to 64 MiB from the heap and keeps up to 256 MiB of freed heap memory.
    ///
    /// glibc hands each allocation above its mmap threshold (128 KiB, raised dynamically, but not
    /// reliably on threads' arenas) to `mmap` and returns it with `munmap`, so a stream of 2.5 MB
    /// feature matrices touches fresh zeroed pages for every image, and two decode threads then queue
    /// on the kernel's page-fault and unmap path. Measured by `Tools/bench store` (float32 deflate,
    /// 40x40x384, 2 decode threads): 1.10-1.41x the 1-thread rate before, 1.89x with these settings.
    /// A no-op where the allocator is not glibc's.
    public static func keepLargeBuffersInHeap() {
        unseg_heap_thresholds(64 << 20, 256 << 20)
    }
}
