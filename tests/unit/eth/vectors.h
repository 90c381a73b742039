/* Loads tests/unit/eth/vectors.json (made with ethers by tests/interop/chain/gen_unit_vectors.js).
 */
#ifndef LPOD_TEST_ETH_VECTORS_H
#define LPOD_TEST_ETH_VECTORS_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

cJSON *vectors_load(void);
/* Decodes a "0x…" string member; returns a malloc'd buffer (never NULL) and its length. */
uint8_t *vectors_hex(const cJSON *v, size_t *len);
const cJSON *vectors_find(const cJSON *arr, const char *key, const char *value);

#endif
