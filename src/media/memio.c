/* In-memory AVIO: segments never touch the disk on their way through the engine. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <libavutil/mem.h>

#include "media_int.h"

#define IO_BUF 32768

static int memin_read(void *opaque, uint8_t *buf, int size) {
  media_memin_t *m = opaque;
  size_t left = m->len - m->pos;
  if (!left) return AVERROR_EOF;
  size_t n = LP_MIN((size_t)size, left);
  memcpy(buf, m->data + m->pos, n);
  m->pos += n;
  return (int)n;
}

static int64_t memin_seek(void *opaque, int64_t off, int whence) {
  media_memin_t *m = opaque;
  int64_t base;
  switch (whence & ~AVSEEK_FORCE) {
  case AVSEEK_SIZE: return (int64_t)m->len;
  case SEEK_SET: base = 0; break;
  case SEEK_CUR: base = (int64_t)m->pos; break;
  case SEEK_END: base = (int64_t)m->len; break;
  default: return AVERROR(EINVAL);
  }
  int64_t p = base + off;
  if (p < 0 || p > (int64_t)m->len) return AVERROR(EINVAL);
  m->pos = (size_t)p;
  return p;
}

AVIOContext *media_memin_open(media_memin_t *m, const uint8_t *data, size_t len) {
  m->data = data;
  m->len = len;
  m->pos = 0;
  uint8_t *buf = av_malloc(IO_BUF);
  if (!buf) return NULL;
  AVIOContext *pb = avio_alloc_context(buf, IO_BUF, 0, m, memin_read, NULL, memin_seek);
  if (!pb) av_free(buf);
  return pb;
}

static int memout_write(void *opaque, uint8_t *buf, int size) {
  media_memout_t *m = opaque;
  size_t end = m->pos + (size_t)size;
  if (end > m->buf.len) {
    if (lp_buf_reserve(&m->buf, end - m->buf.len) < 0) return AVERROR(ENOMEM);
    memset(m->buf.data + m->buf.len, 0, end - m->buf.len);
    m->buf.len = end;
  }
  memcpy(m->buf.data + m->pos, buf, (size_t)size);
  m->pos = end;
  return size;
}

static int memout_read(void *opaque, uint8_t *buf, int size) {
  media_memout_t *m = opaque;
  size_t left = m->buf.len - m->pos;
  if (!left) return AVERROR_EOF;
  size_t n = LP_MIN((size_t)size, left);
  memcpy(buf, m->buf.data + m->pos, n);
  m->pos += n;
  return (int)n;
}

static int64_t memout_seek(void *opaque, int64_t off, int whence) {
  media_memout_t *m = opaque;
  int64_t base;
  switch (whence & ~AVSEEK_FORCE) {
  case AVSEEK_SIZE: return (int64_t)m->buf.len;
  case SEEK_SET: base = 0; break;
  case SEEK_CUR: base = (int64_t)m->pos; break;
  case SEEK_END: base = (int64_t)m->buf.len; break;
  default: return AVERROR(EINVAL);
  }
  int64_t p = base + off;
  if (p < 0) return AVERROR(EINVAL);
  m->pos = (size_t)p;
  return p;
}

AVIOContext *media_memout_open(media_memout_t *m) {
  m->pos = 0;
  uint8_t *buf = av_malloc(IO_BUF);
  if (!buf) return NULL;
  AVIOContext *pb = avio_alloc_context(buf, IO_BUF, 1, m, memout_read, memout_write, memout_seek);
  if (!pb) av_free(buf);
  return pb;
}

void media_avio_free(AVIOContext **pb) {
  if (!*pb) return;
  av_freep(&(*pb)->buffer);
  avio_context_free(pb);
}
