/* Standard base64 (RFC 4648, with padding) decoding, for the `file:` parameters of the
 * repository extension's load request. */
#ifndef IB_SERVER_BASE64_H
#define IB_SERVER_BASE64_H

#include <stddef.h>
#include <stdint.h>

#include "inferbooster/inferbooster.h"

/* Decodes `len` characters of `text` into a buffer from ib__malloc (*out, *out_len;
 * the caller frees it with ib__free). Whitespace is refused, as is anything but the
 * base64 alphabet with '=' padding at the end: IB_ERR_INVALID_ARGUMENT. */
ib_status ib__base64_decode(const char *text, size_t len, uint8_t **out, size_t *out_len);

#endif /* IB_SERVER_BASE64_H */
