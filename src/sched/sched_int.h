/* sched internals shared by its source files. */
#ifndef LPOD_SCHED_INT_H
#define LPOD_SCHED_INT_H

#include "lpod/sched.h"

#define ENGINE_FULL 1000.0 /* wu/s: 1 wu = 1 ms of engine time */

typedef struct sched_session {
  char *id;
  int dev;
  uint64_t ladder;                       /* ladder_key() of its job (sched.c) */
  int in_width, in_height, n_renditions; /* for logs */
  double in_fps;
  int rate_band; /* sched_rate_band() of its job */
  lp_sched_cost_t cost;
  double rt;    /* EWMA of this stream's real-time ratio */
  int segments; /* reported so far */
  bool flagged; /* reported as unable to keep real time */
} sched_session_t;

typedef struct sched_device {
  lp_sched_dev_kind_t kind;
  char *name, *id, *driver;
  double cpus;
  int max_enc, max_dec;
  uint64_t mem_total;
  unsigned cpu_encode; /* codecs encoded on the host's CPU (lp_sched_device_desc_t) */
  bool cpu_scale;      /* its frames scaled on the host's CPU */
  int cap_sessions;    /* -perGpuMax entry; 0 = none */
  bool down;           /* quarantined: no new sessions */
  lp_sched_coefs_t coefs;
  bool calibrated;
  lp_sched_source_t *src;
  bool src_failed; /* the last sample failed and was logged */
  lp_sched_sample_t sample;
  uint64_t sample_ms;
  bool have_sample;
  /* Sessions released while telemetry still counts them, which the model no longer carries:
   * utilisation is measured over a window that began at the previous sample, so a sample holds
   * the work released during its window (rel_window) and after it (rel_since); session counts
   * and memory are read at the sample, so only what was released after it. */
  struct sched_released {
    double engine[LP_SCHED_MAX_ENGINES];
    int enc, dec; /* read at the sample: rel_since only */
    uint64_t mem;
  } rel_window, rel_since;
  bool sampled_once;
  double committed[LP_SCHED_MAX_ENGINES];
  double host_cpu; /* wu/s its sessions hold on the CPU device for their CPU encodes */
  int hosted;      /* CPU device: other devices' sessions whose CPU encodes it carries */
  int enc, dec, sessions;
  uint64_t mem;
  double rt;    /* EWMA of the real-time ratio of every segment on the device */
  int segments; /* since the device last had no sessions */
  double corr;  /* budget multiplier */
  bool behind;
  uint64_t pressed_ms; /* when work was last refused for lack of budget; 0 never */
  /* Measured over modelled utilisation of the fullest engine, over steady telemetry windows
   * (no session admitted or released during them); 0 until judged. */
  double tel_q;
  uint64_t admitted, refused;
} sched_device_t;

/* What the streams of one ladder take on one device, learnt from their segments: the real-time
 * ratio r against the other streams' work there u (their committed wu/s / 1000), r = a + b·u,
 * from EWMA-weighted sums. */
typedef struct sched_ladder {
  uint64_t key; /* 0: free slot */
  int dev;
  double w, su, sr, suu, sur;
  double k;         /* b/a of the last fit whose loads were spread enough; < 0: none yet */
  uint64_t n;       /* observations */
  uint64_t used_ms; /* last observation, for eviction */
  int in_width, in_height, n_renditions; /* for the admin API */
  double in_fps;
  int rate_band; /* its sources' bits per pixel, sched_rate_band() */
} sched_ladder_t;
#define SCHED_LADDERS 64
/* A job's source rate as a band of bits per pixel: round(log2(bpp / LP_SCHED_REF_BPP)), within
 * +/- SCHED_RATE_BANDS (0 where the rate is unknown). Band k is centred on REF_BPP * 2^k. */
#define SCHED_RATE_BANDS 8
int sched_rate_band(const lp_sched_job_t *j);
#define SCHED_SLOPE_MAX 20.0 /* the most b/a a ladder's fit may give */

/* Room held for a new session whose first segment is still arriving (lp_sched_hold). */
typedef struct sched_hold {
  char *id;
  int dev;
  lp_sched_cost_t cost;
  uint64_t until; /* clock ms at which it lapses */
} sched_hold_t;

struct lp_sched {
  lp_sched_opts_t o;
  sched_device_t *devs;
  int n_devs;
  sched_session_t *sess;
  size_t n_sess, cap_sess;
  sched_hold_t *holds;
  size_t n_holds, cap_holds;
  int nvenc_system_cap; /* NVENC sessions over all NVIDIA devices; 0 = none */
  int cpu_dev;          /* the first CPU device, which carries other devices' CPU encodes; -1 */
  sched_ladder_t ladders[SCHED_LADDERS];
  uint64_t ladders_gen, ladders_saved; /* observations so far; as of the last save or load */
  uint64_t admissions_at_sample;       /* admissions over all devices at the last lp_sched_poll */
};

/* lp_sched_job_cost on a device whose encodes of the codecs in cpu_encode, and with cpu_scale
 * its scaling, run on the host's CPU (host: the CPU device's coefficients; NULL: nothing does):
 * that work is priced with the CPU's coefficients into cost->host_cpu, and those renditions hold
 * no encoder session or surfaces of the device. */
void sched_job_cost(lp_sched_dev_kind_t kind, const lp_sched_coefs_t *c,
                    const lp_sched_coefs_t *host, unsigned cpu_encode, bool cpu_scale,
                    const lp_sched_job_t *job, lp_sched_cost_t *out);
/* The device's usable budget per engine: 1000 × target × correction. */
double sched_budget(const lp_sched_t *s, const sched_device_t *d);
/* The reference ladder's latency (lp_sched_coefs_t.latency) as {"bpp": [..], "factor": [..]}:
 * in a calibration record's coefs and the admin API's device. */
cJSON *sched_latency_to_json(const lp_sched_coefs_t *c);
/* Parses and writes the "coefs" object of a calibration record. */
cJSON *sched_coefs_to_json(const lp_sched_coefs_t *c);
int sched_coefs_from_json(const cJSON *o, lp_sched_coefs_t *c);
/* JSON of the data dir's files (calibration, ladders): a string member or NULL; a finite number
 * member (false otherwise). */
const char *sched_json_str(const cJSON *o, const char *key);
bool sched_json_num(const cJSON *o, const char *key, double *out);
/* The root of a versioned JSON file whose records are in the array member `array`. NULL when
 * the file is missing (*rc 0) or unusable (*rc set; logged as "can't read PATH" or "PATH is not
 * WHAT of this version", with "; THEN" after). */
cJSON *sched_json_file(const char *path, int version, const char *array, const char *what,
                       const char *then, int *rc);
/* FNV-1a over n bytes, from h (SCHED_FNV_INIT to start). */
#define SCHED_FNV_INIT 14695981039346656037ull
uint64_t sched_fnv(uint64_t h, const void *data, size_t n);
/* Reads a small file under a root prefix into a malloc'd string. */
int sched_read_rooted(const char *root, const char *path, char **out);

#endif
