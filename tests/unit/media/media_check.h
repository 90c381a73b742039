/* Test helpers: inputs made with the ffmpeg CLI, outputs checked by decoding them. */
#ifndef MEDIA_CHECK_H
#define MEDIA_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct outinfo {
  int64_t vframes;   /* frames a decoder gets from the video stream */
  int64_t vpixels;   /* Σ width×height of those frames */
  int64_t vpackets;  /* video packets in the container */
  int64_t keyframes; /* video packets flagged key */
  int64_t apackets;
  bool first_key;      /* the first video packet is a keyframe */
  bool dts_increasing; /* strictly increasing DTS in every stream */
  int w, h;            /* size of the first decoded frame */
  int sizes;           /* distinct frame sizes seen */
  int last_w, last_h;
  double r_fps; /* the video stream's r_frame_rate */
  int64_t first_pts_90k, last_pts_90k;
  char vcodec[16];
  char acodec[16];                 /* the audio stream's codec ("" when none) */
  int arate, achannels;            /* its sample rate and channels */
  int64_t a_first_90k, a_last_90k; /* first and last audio packet pts */
} outinfo_t;

/* Decodes a muxed output held in memory; returns 0 or -1 when it cannot be read. */
int check_decode(const uint8_t *data, size_t len, outinfo_t *oi);
/* The folder for generated inputs (created once per test binary). */
const char *gen_dir(void);
/* Runs `ffmpeg -y -v error ARGS DIR/NAME` unless DIR/NAME exists; returns the path. */
const char *gen(const char *name, const char *args);
/* Reads a whole file; aborts the test on failure. */
uint8_t *slurp(const char *path, size_t *len);
/* Path of a file in LPOD_MEDIA_DIR. */
const char *media_file(const char *name);

#endif
