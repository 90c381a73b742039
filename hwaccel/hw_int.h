/* hwaccel internals shared by the hardware backends and the device table. */
#ifndef LPOD_HW_INT_H
#define LPOD_HW_INT_H

#include <libavcodec/avcodec.h>
#include <libavfilter/avfilter.h>
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

/* ---- synthetic clips and a decode -> scale -> encode pipeline (hwaccel/clip.c), for the
 * self-test and the calibration benchmark ---- */

typedef struct hw_clip {
  AVCodecParameters *par;
  AVPacket **pkts;
  int n, cap;
  AVRational tb;
} hw_clip_t;

/* What hw_clip_make encodes. */
/* Grain amplitude of "realistic" frames: camera-like noise that rate control has to spend bits
 * on and encoders have to search through (a clean gradient encodes several times faster than
 * real content at x264's fast presets, which made calibration over-optimistic). */
#define HW_REALISTIC_GRAIN 8

typedef struct hw_clip_spec {
  hw_codec_t codec;
  enum AVPixelFormat fmt;
  int w, h, frames;
  int threads; /* the encoder's thread_count, 0 = auto */
  /* Grain on the frames, and for H.264 CABAC and the deblocking filter as broadcasters' x264
   * uses them: decoding the clip then costs about what decoding a real stream of its bit rate
   * costs. Without it, the encoder's fastest setting on a clean gradient. */
  bool realistic;
  /* Bits per pixel, 0: 0.1. Up to HW_CLIP_RATE_MAX (and for codecs other than H.264 and HEVC)
   * the encoder's rate control is asked for it. Above, a realistic clip gets its rate the way a
   * grainy camera source does: grain chosen for that rate (hw_clip_grain), encoded at constant
   * quality (CRF HW_CLIP_CRF); the rate comes out near the one asked (hw_clip_bpp says where).
   * A high rate forced onto the lightly grained picture buys finer quantisation instead, and
   * those bits decoded about a third cheaper each than the ones grain makes at an ordinary
   * quality (docs/capacity.md, "Calibration"). */
  double bpp;
} hw_clip_spec_t;
#define HW_CLIP_RATE_MAX 0.2
#define HW_CLIP_CRF "23"
#define HW_CLIP_GRAIN_MAX 40

/* Encodes a clip of synthetic frames with a CPU encoder at its fastest setting, at 30 frames/s
 * and spec->bpp bits per pixel (at least 400 kb/s where asked of rate control), keyframes at most
 * 60 frames apart. LP_EUNSUPP when this FFmpeg has no such encoder. */
int hw_clip_make(const hw_clip_spec_t *spec, hw_clip_t *out);
/* The grain amplitude the clip's frames get: 0 unless realistic, HW_REALISTIC_GRAIN where the
 * rate is asked of rate control, more for a rate made at constant quality. */
int hw_clip_grain(const hw_clip_spec_t *spec);
void hw_clip_free(hw_clip_t *c);
/* Bits per pixel the clip was made at: its packets' bits over its frames' pixels (0 if empty). */
double hw_clip_bpp(const hw_clip_t *c);
/* Frame k of a moving gradient into f (allocated, any planar YUV format), with noise of +/- grain
 * levels (8-bit scale) that differs in every frame. */
void hw_fill_frame(AVFrame *f, int k, int grain);
/* Receives the packets an encoder has ready, into keep or dropped (keep NULL). Returns how many,
 * or a negative AVERROR. */
int hw_enc_drain(AVCodecContext *c, hw_clip_t *keep);
/* Ends the stream, drops what is left and frees the encoder. */
void hw_enc_close(AVCodecContext **c);

typedef int (*hw_frame_fn)(void *ud, AVFrame *f);
/* Decodes a clip through be on device with threads decoder threads (0 = auto), sending packets
 * packets (the clip over and over; 0 = each once); every frame goes to fn. On failure why says
 * where. */
int hw_clip_decode(const hw_backend_t *be, AVBufferRef *device, const hw_clip_t *clip, int threads,
                   int packets, hw_frame_fn fn, void *ud, char *why, size_t wlen);

/* Frames of a decoder through be's scaler to out_w x out_h, then an encoder of enc_be. */
typedef struct hw_pipe {
  const hw_backend_t *be;     /* the scaler's: the decoder's backend */
  const hw_backend_t *enc_be; /* the encoder's: be, or sw on the CPU route; NULL: no encoder */
  AVBufferRef *device;
  bool host; /* frames go to a CPU encoder: be's scale_filter_host where it has one */
  int out_w, out_h;
  hw_enc_params_t ep; /* the encoder's settings; size and time base come from the frames */
  hw_clip_t *keep;    /* where packets go; NULL: dropped */
  char *why;
  size_t wlen;
  /* state */
  AVFilterGraph *graph;
  AVFilterContext *src, *sink;
  AVCodecContext *enc;
  AVFrame *ff;
  int64_t outputs; /* frames out of the last stage: packets, or scaled frames without encoder */
  int open_err;    /* what encoder_open returned when the encoder did not open (LP_E*) */
} hw_pipe_t;

/* A hw_frame_fn: scales f (the scaler is made at the first frame), encodes what comes out. */
int hw_pipe_frame(void *ud, AVFrame *f);
/* Encodes f as it is (the encoder opens at the first frame, with ep's time base when the pipe
 * has no scaler). */
int hw_pipe_encode(hw_pipe_t *p, AVFrame *f);
/* Ends the scaler's stream and drains the encoder. */
int hw_pipe_finish(hw_pipe_t *p);
void hw_pipe_free(hw_pipe_t *p);

#endif
