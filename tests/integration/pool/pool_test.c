#include "pool_test.h"

#include <libavformat/avformat.h>
#include <stdio.h>

#include "lpod/core.h"

bool pt_run_until(uv_loop_t *loop, volatile bool *flag, uint64_t timeout_ms) {
  uint64_t end = lp_now_ms() + timeout_ms;
  while (!*flag && lp_now_ms() < end) uv_run(loop, UV_RUN_ONCE);
  return *flag;
}

bool pt_wait_transcoders(uv_loop_t *loop, const pool_manager_t *m, int n, uint64_t timeout_ms) {
  uint64_t end = lp_now_ms() + timeout_ms;
  while (pool_manager_transcoders(m) != n && lp_now_ms() < end) uv_run(loop, UV_RUN_ONCE);
  return pool_manager_transcoders(m) == n;
}

int64_t pt_count_frames(const char *dir, const uint8_t *data, size_t len, int *w, int *h) {
  char path[400];
  snprintf(path, sizeof path, "%s/rendition.ts", dir);
  if (lp_file_write_atomic(path, data, len, 0600)) return -1;
  AVFormatContext *fc = NULL;
  if (avformat_open_input(&fc, path, NULL, NULL) < 0) return -1;
  avformat_find_stream_info(fc, NULL);
  int vs = av_find_best_stream(fc, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
  int64_t n = -1;
  if (vs >= 0) {
    *w = fc->streams[vs]->codecpar->width;
    *h = fc->streams[vs]->codecpar->height;
    n = 0;
    AVPacket *pkt = av_packet_alloc();
    while (av_read_frame(fc, pkt) >= 0) {
      if (pkt->stream_index == vs) n++;
      av_packet_unref(pkt);
    }
    av_packet_free(&pkt);
  }
  avformat_close_input(&fc);
  return n;
}
