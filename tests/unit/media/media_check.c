#include "media_check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>

typedef struct {
  const uint8_t *d;
  size_t len, pos;
} rd_t;

static int rd_read(void *op, uint8_t *buf, int n) {
  rd_t *r = op;
  size_t left = r->len - r->pos;
  if (!left) return AVERROR_EOF;
  if ((size_t)n > left) n = (int)left;
  memcpy(buf, r->d + r->pos, (size_t)n);
  r->pos += (size_t)n;
  return n;
}

static int64_t rd_seek(void *op, int64_t off, int whence) {
  rd_t *r = op;
  if (whence == AVSEEK_SIZE) return (int64_t)r->len;
  int64_t base = whence == SEEK_CUR ? (int64_t)r->pos : whence == SEEK_END ? (int64_t)r->len : 0;
  if (base + off < 0 || base + off > (int64_t)r->len) return -1;
  r->pos = (size_t)(base + off);
  return base + off;
}

int check_decode(const uint8_t *data, size_t len, outinfo_t *oi) {
  memset(oi, 0, sizeof(*oi));
  oi->dts_increasing = true;
  rd_t r = {data, len, 0};
  uint8_t *iobuf = av_malloc(4096);
  AVIOContext *pb = avio_alloc_context(iobuf, 4096, 0, &r, rd_read, NULL, rd_seek);
  AVFormatContext *ic = avformat_alloc_context();
  ic->pb = pb;
  int ret = -1;
  AVCodecContext *dec = NULL;
  AVPacket *p = av_packet_alloc();
  AVFrame *f = av_frame_alloc();
  int64_t last_dts[8];
  for (int i = 0; i < 8; i++) last_dts[i] = INT64_MIN;
  if (avformat_open_input(&ic, NULL, NULL, NULL) < 0) goto out;
  if (avformat_find_stream_info(ic, NULL) < 0) goto close;
  int vi = av_find_best_stream(ic, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
  if (vi >= 0) {
    AVStream *st = ic->streams[vi];
    const AVCodec *c = avcodec_find_decoder(st->codecpar->codec_id);
    dec = avcodec_alloc_context3(c);
    avcodec_parameters_to_context(dec, st->codecpar);
    dec->thread_count = 1;
    if (avcodec_open2(dec, c, NULL) < 0) goto close;
    oi->r_fps = av_q2d(st->r_frame_rate);
    snprintf(oi->vcodec, sizeof(oi->vcodec), "%s", avcodec_get_name(st->codecpar->codec_id));
  }
  int ai = av_find_best_stream(ic, AVMEDIA_TYPE_AUDIO, -1, -1, NULL, 0);
  if (ai >= 0) {
    const AVCodecParameters *ap = ic->streams[ai]->codecpar;
    snprintf(oi->acodec, sizeof(oi->acodec), "%s", avcodec_get_name(ap->codec_id));
    oi->arate = ap->sample_rate;
    oi->achannels = ap->ch_layout.nb_channels;
  }
  oi->a_first_90k = INT64_MAX;
  oi->a_last_90k = INT64_MIN;
  oi->first_pts_90k = INT64_MAX;
  oi->last_pts_90k = INT64_MIN;
  for (;;) {
    int rr = av_read_frame(ic, p);
    bool eof = rr < 0;
    if (!eof) {
      int si = p->stream_index;
      if (si < 8 && p->dts != AV_NOPTS_VALUE) {
        if (p->dts <= last_dts[si]) oi->dts_increasing = false;
        last_dts[si] = p->dts;
      } else if (p->dts == AV_NOPTS_VALUE) {
        oi->dts_increasing = false;
      }
      if (si != vi) {
        if (ic->streams[si]->codecpar->codec_type == AVMEDIA_TYPE_AUDIO) {
          oi->apackets++;
          if (p->pts != AV_NOPTS_VALUE) {
            int64_t t = av_rescale_q(p->pts, ic->streams[si]->time_base, (AVRational){1, 90000});
            if (t < oi->a_first_90k) oi->a_first_90k = t;
            if (t > oi->a_last_90k) oi->a_last_90k = t;
          }
        }
        av_packet_unref(p);
        continue;
      }
      if (oi->vpackets == 0) oi->first_key = p->flags & AV_PKT_FLAG_KEY;
      oi->vpackets++;
      if (p->flags & AV_PKT_FLAG_KEY) oi->keyframes++;
      if (p->pts != AV_NOPTS_VALUE) {
        int64_t t = av_rescale_q(p->pts, ic->streams[vi]->time_base, (AVRational){1, 90000});
        if (t < oi->first_pts_90k) oi->first_pts_90k = t;
        if (t > oi->last_pts_90k) oi->last_pts_90k = t;
      }
    }
    if (!dec) {
      if (eof) break;
      continue;
    }
    avcodec_send_packet(dec, eof ? NULL : p);
    av_packet_unref(p);
    while (avcodec_receive_frame(dec, f) == 0) {
      if (!oi->vframes)
        oi->w = f->width, oi->h = f->height, oi->sizes = 1;
      else if (f->width != oi->last_w || f->height != oi->last_h)
        oi->sizes++;
      oi->last_w = f->width;
      oi->last_h = f->height;
      oi->vframes++;
      oi->vpixels += (int64_t)f->width * f->height;
      av_frame_unref(f);
    }
    if (eof) break;
  }
  ret = 0;
close:
  avformat_close_input(&ic);
out:
  avcodec_free_context(&dec);
  av_packet_free(&p);
  av_frame_free(&f);
  av_freep(&pb->buffer);
  avio_context_free(&pb);
  if (ic) avformat_free_context(ic);
  return ret;
}

static char dir[512];

const char *gen_dir(void) {
  if (!dir[0]) {
    const char *b = getenv("LPOD_BINARY_DIR");
    snprintf(dir, sizeof(dir), "%s/media-inputs", b ? b : "/tmp");
    mkdir(dir, 0755);
  }
  return dir;
}

const char *gen(const char *name, const char *args) {
  static char paths[64][600];
  static int n;
  char *path = paths[n++ % 64];
  snprintf(path, 600, "%s/%s", gen_dir(), name);
  struct stat st;
  if (stat(path, &st) == 0 && st.st_size > 0) return path;
  char cmd[4096];
  snprintf(cmd, sizeof(cmd), "ffmpeg -nostdin -y -v error %s %s.tmp.%s", args, path,
           strrchr(name, '.') + 1);
  if (system(cmd) != 0) {
    fprintf(stderr, "generating %s failed: %s\n", name, cmd);
    abort();
  }
  char tmp[700];
  snprintf(tmp, sizeof(tmp), "%s.tmp.%s", path, strrchr(name, '.') + 1);
  rename(tmp, path);
  return path;
}

uint8_t *slurp(const char *path, size_t *len) {
  FILE *fp = fopen(path, "rb");
  if (!fp) {
    fprintf(stderr, "cannot open %s\n", path);
    abort();
  }
  fseek(fp, 0, SEEK_END);
  long n = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  uint8_t *b = malloc((size_t)n + 1);
  if (fread(b, 1, (size_t)n, fp) != (size_t)n) abort();
  fclose(fp);
  *len = (size_t)n;
  return b;
}

const char *media_file(const char *name) {
  static char paths[16][600];
  static int n;
  char *p = paths[n++ % 16];
  const char *d = getenv("LPOD_MEDIA_DIR");
  snprintf(p, 600, "%s/%s", d ? d : "/work/shared/media", name);
  return p;
}
