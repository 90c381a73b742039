/* Helpers shared by the hardware backends: codec names, error classes, encoder settings. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <libavfilter/buffersrc.h>
#include <libavutil/log.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>

#include "hw_int.h"

static const struct {
  enum AVCodecID id;
  const char *name;
} codecs[HW_CODECS] = {
    {AV_CODEC_ID_H264, "h264"}, {AV_CODEC_ID_HEVC, "hevc"}, {AV_CODEC_ID_VP8, "vp8"},
    {AV_CODEC_ID_VP9, "vp9"},   {AV_CODEC_ID_AV1, "av1"},
};

static void av_log_cb(void *avcl, int level, const char *fmt, va_list vl) {
  if (level > AV_LOG_WARNING || level > av_log_get_level() || !LP_LOG_ON(LP_V_DEBUG)) return;
  char line[1024];
  int prefix = 1;
  av_log_format_line2(avcl, level, fmt, vl, line, sizeof(line), &prefix);
  size_t n = strlen(line);
  while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
  if (n) lp_log_write(LP_LOG_INFO, __FILE__, __LINE__, NULL, "libav: %s", line);
}

static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static void log_init(void) { av_log_set_callback(av_log_cb); }
void hw_log_init(void) { pthread_once(&log_once, log_init); }

enum AVCodecID hw_codec_avid(hw_codec_t c) {
  return (unsigned)c < HW_CODECS ? codecs[c].id : AV_CODEC_ID_NONE;
}

const char *hw_codec_name(hw_codec_t c) { return (unsigned)c < HW_CODECS ? codecs[c].name : "?"; }

int hw_codec_from_avid(enum AVCodecID id, hw_codec_t *out) {
  for (int i = 0; i < HW_CODECS; i++)
    if (codecs[i].id == id) {
      *out = (hw_codec_t)i;
      return 0;
    }
  return LP_EUNSUPP;
}

const char *hw_averr(int averror, char *buf, size_t len) {
  if (av_strerror(averror, buf, len) < 0) snprintf(buf, len, "error %d", averror);
  return buf;
}

bool hw_pix_fmt_is_hw(int pix_fmt) {
  const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(pix_fmt);
  return d && (d->flags & AV_PIX_FMT_FLAG_HWACCEL);
}

hw_err_class_t hw_classify_gpu(int averror, hw_stage_t stage) {
  if (stage == HW_STAGE_DEMUX) return HW_ERR_INPUT;
  if (averror == AVERROR_EXTERNAL || averror == AVERROR(EIO) || averror == AVERROR(ENODEV) ||
      averror == AVERROR(ENXIO))
    return HW_ERR_DEVICE;
  /* An encoder that finds no device to encode on: the device lost (or never had) it. */
  if (stage == HW_STAGE_ENCODE && averror == AVERROR(ENOENT)) return HW_ERR_DEVICE;
  if (averror == AVERROR(ENOMEM) || averror == AVERROR_UNKNOWN || averror == AVERROR_BUG ||
      averror == AVERROR(EFAULT) || averror == AVERROR(EBADF))
    return HW_ERR_SESSION;
  return HW_ERR_INPUT;
}

void hw_enc_common(AVCodecContext *c, const hw_enc_params_t *p, const char *quality_key,
                   int cq_offset, int cq_max, AVDictionary **o) {
  av_dict_set(o, "forced-idr", "1", 0);
  if (p->quality > 0) {
    av_dict_set_int(o, quality_key, LP_MIN(p->quality + cq_offset, cq_max), 0);
    if (p->bitrate > 0) {
      c->rc_max_rate = p->bitrate;
      c->rc_buffer_size = (int)p->bitrate;
    }
  } else if (p->bitrate > 0) {
    c->bit_rate = p->bitrate;
    c->rc_min_rate = p->bitrate;
    c->rc_max_rate = p->bitrate;
    c->rc_buffer_size = (int)p->bitrate;
  }
  if (p->gop_frames < 0) {
    c->gop_size = 0; /* intra only */
    c->max_b_frames = 0;
  } else if (p->gop_frames > 0) {
    c->gop_size = p->gop_frames;
  } else if (p->gop_forced) {
    c->gop_size = 1 << 30; /* the caller forces every keyframe */
  }
  if (p->global_header) c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
}

typedef struct preset_map {
  const char *x264, *nvenc, *qsv;
} preset_map_t;

static const preset_map_t presets[] = {
    {"ultrafast", "p1", "veryfast"}, {"superfast", "p2", "veryfast"},
    {"veryfast", "p3", "faster"},    {"faster", "p3", "fast"},
    {"fast", "p4", "fast"},          {"medium", "p4", "medium"},
    {"slow", "p5", "slow"},          {"slower", "p6", "slower"},
    {"veryslow", "p7", "veryslow"},  {"placebo", "p7", "veryslow"},
};

/* lpms asks NVENC for "medium", which FFmpeg maps to P4 one pass. */
const char *hw_nvenc_preset(const char *name) {
  if (!name) return "p4";
  if ((name[0] == 'p' || name[0] == 'P') && name[1] >= '1' && name[1] <= '7' && !name[2])
    return name;
  for (size_t i = 0; i < LP_ARRAY_LEN(presets); i++)
    if (strcmp(presets[i].x264, name) == 0) return presets[i].nvenc;
  return "p4";
}

const char *hw_qsv_preset(const char *name) {
  if (!name) return "medium";
  for (size_t i = 0; i < LP_ARRAY_LEN(presets); i++)
    if (strcmp(presets[i].x264, name) == 0) return presets[i].qsv;
  return "medium";
}

int hw_codec_open(AVCodecContext *c, const AVCodec *codec, AVDictionary **opts) {
  static atomic_bool warned;
  lp_policy_t before;
  lp_policy_save(&before);
  int ret = avcodec_open2(c, codec, opts);
  if (lp_policy_restore(&before) && !atomic_exchange(&warned, true))
    LOGI("%s moved the thread that opened it to a real-time policy; lpod put it back",
         codec && codec->name ? codec->name : "a codec");
  return ret;
}

int hw_filter_graph(const char *args, AVBufferRef *hw_frames, const char *chain,
                    AVFilterGraph **graph, AVFilterContext **src, AVFilterContext **sink) {
  *src = *sink = NULL;
  AVFilterGraph *g = *graph = avfilter_graph_alloc();
  if (!g) return AVERROR(ENOMEM);
  g->nb_threads = 1;
  int ret = avfilter_graph_create_filter(src, avfilter_get_by_name("buffer"), "in", args, NULL, g);
  if (ret >= 0 && hw_frames) {
    AVBufferSrcParameters *bp = av_buffersrc_parameters_alloc();
    if (!bp) {
      ret = AVERROR(ENOMEM);
    } else {
      bp->hw_frames_ctx = hw_frames;
      ret = av_buffersrc_parameters_set(*src, bp);
      av_free(bp);
    }
  }
  if (ret >= 0)
    ret = avfilter_graph_create_filter(sink, avfilter_get_by_name("buffersink"), "out", NULL, NULL,
                                       g);
  AVFilterInOut *in = NULL, *out = NULL;
  if (ret >= 0) {
    in = avfilter_inout_alloc();
    out = avfilter_inout_alloc();
    if (!in || !out) ret = AVERROR(ENOMEM);
  }
  if (ret >= 0) {
    out->name = av_strdup("in");
    out->filter_ctx = *src;
    in->name = av_strdup("out");
    in->filter_ctx = *sink;
    ret = avfilter_graph_parse_ptr(g, chain, &in, &out, NULL);
  }
  if (ret >= 0) ret = avfilter_graph_config(g, NULL);
  avfilter_inout_free(&in);
  avfilter_inout_free(&out);
  if (ret < 0) {
    avfilter_graph_free(graph);
    *src = *sink = NULL;
  }
  return ret;
}
