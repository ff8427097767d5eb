import CBLAS
import CHDF5
import CLAPACKE
import CPNG
import Foundation
import Testing
import UnsegHDF5

/// "Can we build, link and call": one real call into each C library.
@Suite struct CShimTests {
    @Test func blasSgemmComputesAProduct() {
        // [1 2; 3 4] * [5 6; 7 8] = [19 22; 43 50]
        let a: [Float] = [1, 2, 3, 4], b: [Float] = [5, 6, 7, 8]
        var c = [Float](repeating: 0, count: 4)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2, 2, 2, 1, a, 2, b, 2, 0, &c, 2)
        #expect(c == [19, 22, 43, 50])
        #expect(unseg_blas_get_threads() >= 1)
        #expect(!String(cString: unseg_blas_core_name()).isEmpty)
    }

    @Test func lapackeSolvesASymmetricEigenproblem() {
        // eigenvalues of [2 1; 1 2] are 1 and 3
        var a: [Double] = [2, 1, 1, 2]
        var w = [Double](repeating: 0, count: 2)
        let info = LAPACKE_dsyev(unseg_lapack_row_major(), Int8(UInt8(ascii: "N")), Int8(UInt8(ascii: "U")), 2, &a, 2, &w)
        #expect(info == 0)
        #expect(abs(w[0] - 1) < 1e-12 && abs(w[1] - 3) < 1e-12)
    }

    /// Holds unseg's HDF5 lock: the Debian HDF5 build is not thread-safe and other tests run concurrently.
    @Test func hdf5ReportsItsVersionAndCreatesAFile() throws {
        try HDF5.locked { try hdf5Calls() }
    }

    func hdf5Calls() throws {
        var maj: UInt32 = 0, min: UInt32 = 0, rel: UInt32 = 0
        #expect(H5get_libversion(&maj, &min, &rel) >= 0)
        #expect(maj == 1 && min >= 10)
        let path = NSTemporaryDirectory() + "unseg-shim-\(getpid()).h5"
        defer { unlink(path) }
        let f = H5Fcreate(path, unseg_H5F_ACC_TRUNC(), unseg_H5P_DEFAULT(), unseg_H5P_DEFAULT())
        #expect(f >= 0)
        #expect(H5Fclose(f) >= 0)
        #expect(H5Fis_hdf5(path) > 0)
    }

    @Test func libpngWritesAndReadsAPixel() throws {
        let path = NSTemporaryDirectory() + "unseg-shim-\(getpid()).png"
        defer { unlink(path) }
        var img = png_image()
        img.version = unseg_png_image_version()
        img.width = 2; img.height = 1
        img.format = unseg_png_format_rgb()
        let px: [UInt8] = [255, 0, 0, 0, 0, 255]
        #expect(png_image_write_to_file(&img, path, 0, px, 0, nil) != 0)
        var r = png_image()
        r.version = unseg_png_image_version()
        #expect(png_image_begin_read_from_file(&r, path) != 0)
        r.format = unseg_png_format_rgb()
        var out = [UInt8](repeating: 0, count: Int(unseg_png_image_size(&r)))
        #expect(png_image_finish_read(&r, nil, &out, 0, nil) != 0)
        #expect(out == px)
    }
}
