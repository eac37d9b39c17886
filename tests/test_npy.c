/* Unit tests for the .npy reader/writer: round trips of every dtype, and hostile or
 * malformed files refused with a status (never a crash or an oversized allocation). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/npy.h"
#include "test.h"

/* Builds a v1 file from a header dict (newline and padding added) and data bytes. */
static size_t make_npy(unsigned char *buf, size_t cap, int major, const char *dict,
                       const void *data, size_t data_len) {
    size_t prefix = major == 1 ? 10 : 12;
    size_t dlen = strlen(dict);
    size_t header_len = dlen + 1;
    if (prefix + header_len + data_len > cap) return 0;
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = 0;
    buf[8] = (unsigned char)(header_len & 0xff);
    buf[9] = (unsigned char)(header_len >> 8);
    if (major != 1) {
        buf[10] = (unsigned char)(header_len >> 16);
        buf[11] = (unsigned char)(header_len >> 24);
    }
    memcpy(buf + prefix, dict, dlen);
    buf[prefix + dlen] = '\n';
    if (data_len) memcpy(buf + prefix + header_len, data, data_len);
    return prefix + header_len + data_len;
}

static ib_status parse(const char *dict, const void *data, size_t data_len, ib_tensor *t) {
    unsigned char buf[4096];
    size_t n = make_npy(buf, sizeof buf, 1, dict, data, data_len);
    if (!n) return IB_ERR_INTERNAL;
    return ib__npy_read_bytes(buf, n, t);
}

TEST(round_trip_all_dtypes) {
    static const ib_dtype dts[] = {IB_DTYPE_FLOAT16, IB_DTYPE_FLOAT32, IB_DTYPE_FLOAT64,
                                   IB_DTYPE_INT8,    IB_DTYPE_INT16,   IB_DTYPE_INT32,
                                   IB_DTYPE_INT64,   IB_DTYPE_UINT8,   IB_DTYPE_UINT16,
                                   IB_DTYPE_UINT32,  IB_DTYPE_UINT64,  IB_DTYPE_BOOL};
    for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
        int64_t dims[3] = {2, 3, 5};
        ib_tensor t;
        CHECK_EQ_INT(ib__tensor_alloc(&t, dts[d], 3, dims), IB_OK);
        unsigned char *b = t.data;
        for (size_t i = 0; i < t.nbytes; i++) b[i] = (unsigned char)(i * 37 + d);
        if (dts[d] == IB_DTYPE_BOOL)
            for (size_t i = 0; i < t.nbytes; i++) b[i] &= 1;
        void *bytes = NULL;
        size_t size = 0;
        CHECK_EQ_INT(ib__npy_write_bytes(&t, &bytes, &size), IB_OK);
        CHECK(size % 64 == 0 || (size - t.nbytes) % 64 == 0);
        ib_tensor r;
        CHECK_EQ_INT(ib__npy_read_bytes(bytes, size, &r), IB_OK);
        CHECK_EQ_INT(r.dtype, dts[d]);
        CHECK_EQ_INT(r.rank, 3);
        CHECK_EQ_INT(r.shape[2], 5);
        CHECK_EQ_INT(r.nbytes, t.nbytes);
        CHECK(memcmp(r.data, t.data, t.nbytes) == 0);
        ib_tensor_release(&r);
        ib__free(bytes);
        ib_tensor_release(&t);
    }
}

TEST(round_trip_scalar_vector_empty_file) {
    int64_t d1[1] = {4};
    int64_t d0[2] = {0, 3};
    ib_tensor a, v, e;
    CHECK_EQ_INT(ib__tensor_alloc(&a, IB_DTYPE_FLOAT32, 0, NULL), IB_OK);
    *(float *)a.data = 2.5f;
    CHECK_EQ_INT(ib__tensor_alloc(&v, IB_DTYPE_INT64, 1, d1), IB_OK);
    for (int i = 0; i < 4; i++) ((int64_t *)v.data)[i] = -i;
    CHECK_EQ_INT(ib__tensor_alloc(&e, IB_DTYPE_FLOAT32, 2, d0), IB_OK);
    char path[] = "/tmp/ib_test_npy_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0) close(fd);
    const ib_tensor *ts[3] = {&a, &v, &e};
    for (int k = 0; k < 3; k++) {
        CHECK_EQ_INT(ib__npy_write_file(path, ts[k]), IB_OK);
        ib_tensor r;
        CHECK_EQ_INT(ib__npy_read_file(path, &r), IB_OK);
        CHECK_EQ_INT(r.rank, ts[k]->rank);
        CHECK_EQ_INT(r.nbytes, ts[k]->nbytes);
        for (int32_t i = 0; i < r.rank; i++) CHECK_EQ_INT(r.shape[i], ts[k]->shape[i]);
        CHECK(r.nbytes == 0 || memcmp(r.data, ts[k]->data, r.nbytes) == 0);
        ib_tensor_release(&r);
    }
    unlink(path);
    ib_tensor_release(&a);
    ib_tensor_release(&v);
    ib_tensor_release(&e);
}

TEST(numpy_style_headers) {
    float data[6] = {1, 2, 3, 4, 5, 6};
    ib_tensor t;
    /* Key order, quotes, spacing, Python 2 longs, version 2 and 3 preambles. */
    CHECK_EQ_INT(parse("{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}", data,
                       sizeof data, &t),
                 IB_OK);
    CHECK_EQ_INT(t.shape[0], 2);
    ib_tensor_release(&t);
    CHECK_EQ_INT(parse("{\"descr\":\"<f4\",\"fortran_order\":False,\"shape\":(6L,),}   ", data,
                       sizeof data, &t),
                 IB_OK);
    CHECK_EQ_INT(t.rank, 1);
    ib_tensor_release(&t);
    unsigned char buf[512];
    for (int major = 2; major <= 3; major++) {
        size_t n = make_npy(buf, sizeof buf, major,
                            "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }",
                            data, sizeof data);
        CHECK_EQ_INT(ib__npy_read_bytes(buf, n, &t), IB_OK);
        CHECK_EQ_INT(t.shape[1], 2);
        CHECK(((float *)t.data)[5] == 6.0f);
        ib_tensor_release(&t);
    }
    /* Bools other than 0/1 are normalised. */
    unsigned char bools[3] = {0, 7, 1};
    CHECK_EQ_INT(parse("{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", bools, 3, &t),
                 IB_OK);
    CHECK_EQ_INT(((unsigned char *)t.data)[1], 1);
    ib_tensor_release(&t);
}

TEST(hostile_headers_rejected) {
    float data[6] = {0};
    static const char *bad[] = {
        "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }",
        "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }",
        "{'descr': '<U4', 'fortran_order': False, 'shape': (2, 3), }",
        "{'descr': '|O', 'fortran_order': False, 'shape': (2, 3), }",
        "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2, 3), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (6), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'extra': 1}",
        "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}",
        "{'descr': '<f4', 'shape': (2, 3), }",
        "{'descr': '<f4', 'fortran_order': Falsey, 'shape': (2, 3), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } x",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)",
        "{'descr': '<f4, 'fortran_order': False, 'shape': (2, 3), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1,6), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), }", /* data too short */
        "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }",   /* data too long */
        "[1, 2, 3]",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ib_tensor t;
        memset(&t, 0, sizeof t);
        ib_status s = parse(bad[i], data, sizeof data, &t);
        if (s == IB_OK) {
            fprintf(stderr, "  accepted hostile header %zu: %s\n", i, bad[i]);
            ib_tensor_release(&t);
        }
        CHECK(s != IB_OK);
        CHECK(strlen(ib_last_error()) > 0);
    }
}

TEST(hostile_preambles_rejected) {
    unsigned char buf[256];
    float data[2] = {0};
    size_t n = make_npy(buf, sizeof buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
                        data, sizeof data);
    ib_tensor t;
    /* Every truncation of a valid file is refused. */
    for (size_t cut = 0; cut < n; cut++) CHECK(ib__npy_read_bytes(buf, cut, &t) != IB_OK);
    CHECK_EQ_INT(ib__npy_read_bytes(buf, n, &t), IB_OK);
    ib_tensor_release(&t);
    unsigned char b2[256];
    memcpy(b2, buf, n);
    b2[0] = 'X'; /* magic */
    CHECK(ib__npy_read_bytes(b2, n, &t) != IB_OK);
    memcpy(b2, buf, n);
    b2[6] = 9; /* version */
    CHECK(ib__npy_read_bytes(b2, n, &t) != IB_OK);
    memcpy(b2, buf, n);
    b2[8] = 0xff; /* header length past the end */
    b2[9] = 0xff;
    CHECK(ib__npy_read_bytes(b2, n, &t) != IB_OK);
    /* A v2 header length of 4 GiB must not be trusted or allocated. */
    unsigned char big[16] = {0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0, 0xff, 0xff, 0xff, 0xff, '{'};
    CHECK(ib__npy_read_bytes(big, sizeof big, &t) != IB_OK);
    /* A NUL inside the header. */
    memcpy(b2, buf, n);
    b2[15] = '\0';
    CHECK(ib__npy_read_bytes(b2, n, &t) != IB_OK);
}

TEST(random_mutations_never_crash) {
    unsigned char buf[256];
    float data[6] = {1, 2, 3, 4, 5, 6};
    size_t n = make_npy(buf, sizeof buf, 1,
                        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", data,
                        sizeof data);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int accepted = 0;
    for (int iter = 0; iter < 20000; iter++) {
        unsigned char m[256];
        memcpy(m, buf, n);
        int flips = 1 + (int)(x % 4);
        for (int f = 0; f < flips; f++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            m[x % n] = (unsigned char)(x >> 32);
        }
        size_t len = n - (x >> 40) % 3;
        ib_tensor t;
        if (ib__npy_read_bytes(m, len, &t) == IB_OK) {
            accepted++;
            CHECK(t.nbytes <= n);
            ib_tensor_release(&t);
        }
    }
    CHECK(accepted > 0); /* mutations of data bytes stay valid */
}

TEST(unwritable_dtypes) {
    int64_t dims[1] = {2};
    ib_tensor t;
    CHECK_EQ_INT(ib__tensor_alloc(&t, IB_DTYPE_BFLOAT16, 1, dims), IB_OK);
    void *bytes;
    size_t size;
    CHECK_EQ_INT(ib__npy_write_bytes(&t, &bytes, &size), IB_ERR_UNSUPPORTED);
    ib_tensor_release(&t);
    ib_tensor r;
    CHECK(ib__npy_read_file("/nonexistent/dir/x.npy", &r) == IB_ERR_IO);
    CHECK(ib__npy_read_file("/tmp", &r) != IB_OK);
}

int main(void) {
    RUN(round_trip_all_dtypes);
    RUN(round_trip_scalar_vector_empty_file);
    RUN(numpy_style_headers);
    RUN(hostile_headers_rejected);
    RUN(hostile_preambles_rejected);
    RUN(random_mutations_never_crash);
    RUN(unwritable_dtypes);
    TEST_SUMMARY();
}
