/* hwaccel internals shared by the hardware backends and the device table. */
#ifndef LPOD_HW_INT_H
#define LPOD_HW_INT_H

#include <libavcodec/avcodec.h>
#include <libavutil/dict.h>

#include "lpod/core.h"
#include "lpod/hwaccel.h"

/* The software backend (hwaccel/sw.c): the CPU route of every device. */
extern const hw_backend_t hw_backend_sw;

/* Where a GPU-ish error lies. FFmpeg reports a failed CUDA call as AVERROR_EXTERNAL, a lost
 * NVENC/QSV/VA device as AVERROR(EIO) and a missing device as ENODEV/ENOENT: the device is
 * broken. Running out of memory or sessions, or an unknown encoder error, ends the session
 * (another device may have room). Whatever the parser rejects is the input's. */
hw_err_class_t hw_classify_gpu(int averror, hw_stage_t stage);

/* Rate control and keyframe settings shared by the hardware encoders, as lpms sets them:
 * bitrate as min = avg = max with a one second buffer, or a quality target (cq_offset is added
 * to the CRF-like quality: NVENC's CQ = quality + 7) capped by the bitrate; forced IDR. */
void hw_enc_common(AVCodecContext *c, const hw_enc_params_t *p, const char *quality_key,
                   int cq_offset, int cq_max, AVDictionary **o);

/* Speed preset for the hardware encoders from an x264-style name ("veryfast", "medium") or the
 * backend's own names; NVENC uses p1..p7, QSV veryfast..veryslow. */
const char *hw_nvenc_preset(const char *name);
const char *hw_qsv_preset(const char *name);

/* av_strerror into a static-free buffer. */
const char *hw_averr(int averror, char *buf, size_t len);

/* Whether a frame of this format lives in device memory. */
bool hw_pix_fmt_is_hw(int pix_fmt);

#endif
