/* pool internals shared by its source files and unit tests: the pieces that parse and build
 * what goes over the wire, so each can be tested without sockets. */
#ifndef LPOD_POOL_INT_H
#define LPOD_POOL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lp_rpc.pb-c.h"
#include "lpod/core.h"
#include "lpod/media.h"

#define POOL_BOUNDARY_MAX 70 /* RFC 2046 */

/* mime.ParseMediaType for what /transcodeResults needs: the lowercased type/subtype and the
 * boundary parameter (quoted or not; "" when absent). LP_EINVAL for malformed text. */
int pool_mime_parse(const char *ct, char *type, size_t type_len, char *boundary,
                    size_t boundary_len);

typedef struct pool_part {
  const char *content_type; /* "" when absent */
  const char *pixels;       /* NULL when the part has no Pixels header */
  const uint8_t *body;
  size_t len;
} pool_part_t;

/* Walks a multipart body; fn gets every part in order (stop by returning nonzero, which is then
 * returned). LP_EPROTO for a malformed body (text in err), LP_ERANGE for a part over max_part
 * or more than max_parts parts. Bytes before the first boundary are skipped as preamble. */
typedef int (*pool_part_fn)(const pool_part_t *part, void *arg);
int pool_multipart_parse(const uint8_t *body, size_t len, const char *boundary, size_t max_part,
                         size_t max_parts, pool_part_fn fn, void *arg, char *err, size_t errlen);

/* Appends one part (headers Content-Type, Content-Length and, if pixels >= 0, Pixels). */
int pool_multipart_add(lp_buf_t *out, const char *boundary, const char *content_type,
                       int64_t pixels, const uint8_t *data, size_t len);
int pool_multipart_close(lp_buf_t *out, const char *boundary);
/* 20 random hex characters, as Go's multipart writer uses (30 there; any RFC 2046 token works). */
int pool_boundary_new(char out[21]);

/* Decimal int64 the way strconv.ParseInt(s, 10, 64) reads it. */
int pool_parse_i64(const char *s, int64_t *out);

/* The profile list go-livepeer picks (fullProfiles3, else 2, else 1). */
Net__VideoProfile **pool_segdata_profiles(const Net__SegData *sd, size_t *n);
/* Wire profile to engine profile; LP_EINVAL with go's text in *why for unknown enums. */
int pool_profile_from_wire(const Net__VideoProfile *vp, media_profile_t *out, const char **why);

/* Engine profile to wire profile (strings borrowed from the engine profile). */
void pool_profile_to_wire(const media_profile_t *p, Net__VideoProfile *out);

/* Job capabilities against a peer's set (spec §7.3; no mandatories or constraints here beyond
 * minVersion). */
bool pool_caps_compatible(const Net__Capabilities *job, const uint64_t *bits, size_t nbits,
                          const char *version);

#endif
