/* media module internals shared between its source files. */
#ifndef LPOD_MEDIA_INT_H
#define LPOD_MEDIA_INT_H

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>

#include "lpod/core.h"
#include "lpod/hwaccel.h"
#include "lpod/media.h"

enum AVCodecID media_codec_avid(media_codec_t c);
/* media_profile_fit against explicit limits. */
int media_fit_size(const media_profile_t *p, const hw_limits_t *lim, int in_w, int in_h, int *out_w,
                   int *out_h);

/* Read side: an AVIOContext over caller-owned bytes (seekable). */
typedef struct media_memin {
  const uint8_t *data;
  size_t len, pos;
} media_memin_t;
AVIOContext *media_memin_open(media_memin_t *m, const uint8_t *data, size_t len);

/* Write side: an AVIOContext that grows an lp_buf (seekable, for MP4's moov rewrite). */
typedef struct media_memout {
  lp_buf_t buf;
  size_t pos;
} media_memout_t;
AVIOContext *media_memout_open(media_memout_t *m);

/* Frees an AVIOContext made by the two functions above (not its bytes). */
void media_avio_free(AVIOContext **pb);

/* For `lpod transcode` and `lpod bench` on a device backend: probes the session's device as the
 * node does (a tiny transcode per codec) and points o->table at the result, so renditions are
 * routed by what the device passed, not by the encoders the linked FFmpeg lists (a GPU without
 * NVENC encodes on the CPU from its frames). Prints the device's entry on stderr. The CPU
 * backend needs no table (*table stays NULL). Returns 0, or -1 after printing why, prefixed
 * with tool. The caller frees *table after its sessions are made. */
int media_cli_device_table(const char *tool, media_session_opts_t *o, hw_table_t **table);

#endif
