/* Base64 decoding (RFC 4648 alphabet, '=' padding) for uploaded model files. */
#include "server/base64.h"

#include "core/core.h"

static int sextet(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

ib_status ib__base64_decode(const char *text, size_t len, uint8_t **out, size_t *out_len) {
    if (len % 4 != 0)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "base64 text of %zu characters is not a multiple of 4", len);
    size_t pad = 0;
    if (len >= 1 && text[len - 1] == '=') pad++;
    if (len >= 2 && text[len - 2] == '=') pad++;
    size_t n = len / 4 * 3 - pad;
    uint8_t *buf = ib__malloc(n ? n : 1);
    if (!buf) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory decoding %zu bytes of base64", len);
    size_t w = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        for (int j = 0; j < 4; j++) {
            unsigned char c = (unsigned char)text[i + j];
            /* '=' only as the last one or two characters */
            v[j] = (c == '=' && i + j >= len - pad) ? 0 : sextet(c);
            if (v[j] < 0) {
                ib__free(buf);
                return ib__error(IB_ERR_INVALID_ARGUMENT, "invalid base64 character at offset %zu", i + j);
            }
        }
        uint32_t q = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        uint8_t b[3] = {(uint8_t)(q >> 16), (uint8_t)(q >> 8), (uint8_t)q};
        for (int j = 0; j < 3 && w < n; j++) buf[w++] = b[j];
    }
    *out = buf;
    *out_len = n;
    return IB_OK;
}
