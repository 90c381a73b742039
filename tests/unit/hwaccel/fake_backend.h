/* A fake hardware backend for tests only: it runs on the CPU through the software backend, but
 * behaves like a GPU whose codecs, size limits, encoder session cap and health the test sets. */
#ifndef LPOD_TEST_FAKE_BACKEND_H
#define LPOD_TEST_FAKE_BACKEND_H

#include "lpod/hwaccel.h"

typedef struct fake_config {
  int devices;         /* how many devices probe finds */
  unsigned dec;        /* HW_CODEC_BIT: codecs its decoder takes */
  unsigned enc;        /* HW_CODEC_BIT: codecs its encoder takes */
  int max_sessions;    /* encoders that may be open at once; 0 = no cap */
  bool broken;         /* the device no longer opens */
  int dead_device;     /* 1 + the index of a device that does not open; 0 = none */
  bool only_420_8;     /* its decoder takes 8-bit 4:2:0 only (NVDEC and H.264) */
  const char *missing; /* non-NULL: check() fails with this text */
  hw_limits_t limits;  /* for every codec it encodes */
} fake_config_t;

extern const hw_backend_t fake_backend;
/* Resets the fake to cfg (the open-encoder count included). */
void fake_configure(const fake_config_t *cfg);
fake_config_t *fake_config(void);
/* Encoders the fake has open now. */
int fake_open_encoders(void);
/* Encoders the fake has opened since fake_configure. */
int fake_encoders_opened(void);
/* A device table as the start-up probe leaves it: the CPU (its codecs opened, not test-run),
 * then the fake's devices that select picks ("all", "0,1"), tested with real tiny transcodes
 * when test is set, with the fake configured as cfg. Returns hw_table_add's result and its
 * reason in err. */
int fake_table(hw_table_t *t, const fake_config_t *cfg, const char *select, bool test, char *err,
               size_t errlen);

#endif
