/* CPU limits and busy from sample /proc and cgroup trees; NVML and the Intel PMU skip cleanly
 * where they are missing. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lpod/sched.h"
#include "tmpdir.h"

#define NEAR(a, b) assert_true(fabs((a) - (b)) < 1e-9)

/* A /proc/stat with n CPUs; cpu i has busy[i] and idle[i] jiffies (NULL: 100 busy, 900 idle). */
static void write_stat(const char *root, int n, const unsigned long long *busy,
                       const unsigned long long *idle) {
  char text[65536];
  size_t off = 0;
  unsigned long long tb = 0, ti = 0;
  for (int i = 0; i < n; i++) {
    tb += busy ? busy[i] : 100;
    ti += idle ? idle[i] : 900;
  }
  /* user nice system idle iowait irq softirq steal guest guest_nice */
  off +=
      (size_t)snprintf(text + off, sizeof text - off, "cpu  %llu 0 0 %llu 0 0 0 0 0 0\n", tb, ti);
  for (int i = 0; i < n; i++)
    off += (size_t)snprintf(text + off, sizeof text - off, "cpu%d %llu 0 0 %llu 0 0 0 0 0 0\n", i,
                            busy ? busy[i] : 100, idle ? idle[i] : 900);
  snprintf(text + off, sizeof text - off, "intr 0\nctxt 0\nbtime 0\n");
  assert_int_equal(tmpdir_write(root, "proc/stat", text), 0);
}

static void write_status(const char *root, const char *list) {
  char text[256];
  snprintf(text, sizeof text,
           "Name:\tlpod\nCpus_allowed:\tff\nCpus_allowed_list:\t%s\nVoluntary:\t1\n", list);
  assert_int_equal(tmpdir_write(root, "proc/self/status", text), 0);
}

static void test_parsers(void **state) {
  (void)state;
  assert_int_equal(lp_sched_parse_cpu_list("0-3,8,10-11\n"), 7);
  assert_int_equal(lp_sched_parse_cpu_list("5"), 1);
  assert_int_equal(lp_sched_parse_cpu_list("0-63"), 64);
  static const char *const bad[] = {"", "\n", "a", "3-1", "1,", "0-", "1;2", "-1", "99999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(lp_sched_parse_cpu_list(bad[i]), LP_EINVAL);
  assert_int_equal(lp_sched_parse_cpu_list(NULL), LP_EINVAL);

  double c = -1;
  assert_int_equal(lp_sched_parse_cpu_max("max 100000\n", &c), 0);
  NEAR(c, 0);
  assert_int_equal(lp_sched_parse_cpu_max("150000 100000\n", &c), 0);
  NEAR(c, 1.5);
  assert_int_equal(lp_sched_parse_cpu_max("200000 50000", &c), 0);
  NEAR(c, 4);
  assert_int_equal(lp_sched_parse_cpu_max("max", &c), 0);
  NEAR(c, 0);
  assert_int_equal(lp_sched_parse_cpu_max("abc 100000", &c), LP_EINVAL);
  assert_int_equal(lp_sched_parse_cpu_max("-5 100000", &c), LP_EINVAL);
  assert_int_equal(lp_sched_parse_cpu_max("100000 0", &c), LP_EINVAL);
  assert_int_equal(lp_sched_parse_cpu_max("", &c), LP_EINVAL);
}

static void test_cgroup_v2(void **state) {
  (void)state;
  char *root = tmpdir_new();
  write_stat(root, 64, NULL, NULL);
  write_status(root, "0-63");
  tmpdir_write(root, "proc/self/cgroup", "0::/docker/abc\n");
  tmpdir_write(root, "sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory pids\n");
  tmpdir_write(root, "sys/fs/cgroup/docker/abc/cpu.max", "200000 100000\n");
  tmpdir_write(root, "sys/fs/cgroup/docker/cpu.max", "max 100000\n");
  lp_sched_cpu_limits_t l;
  assert_int_equal(lp_sched_cpu_limits(root, &l), 0);
  assert_int_equal(l.online, 64);
  assert_int_equal(l.affinity, 64);
  assert_int_equal(l.cgroup, 2);
  NEAR(l.quota_cpus, 2);
  NEAR(l.effective, 2); /* a 2-CPU container on a 64-core host counts 2 */

  /* a tighter parent wins */
  tmpdir_write(root, "sys/fs/cgroup/docker/cpu.max", "150000 100000\n");
  assert_int_equal(lp_sched_cpu_limits(root, &l), 0);
  NEAR(l.effective, 1.5);

  /* inside the container: our cgroup is the top of the mount */
  tmpdir_write(root, "proc/self/cgroup", "0::/\n");
  tmpdir_write(root, "sys/fs/cgroup/cpu.max", "300000 100000\n");
  assert_int_equal(lp_sched_cpu_limits(root, &l), 0);
  NEAR(l.effective, 3);

  /* affinity tighter than the quota */
  write_status(root, "4-5");
  assert_int_equal(lp_sched_cpu_limits(root, &l), 0);
  assert_int_equal(l.affinity, 2);
  NEAR(l.effective, 2);

  /* no limit at all */
  tmpdir_write(root, "sys/fs/cgroup/cpu.max", "max 100000\n");
  write_status(root, "0-63");
  assert_int_equal(lp_sched_cpu_limits(root, &l), 0);
  NEAR(l.quota_cpus, 0);
  NEAR(l.effective, 64);
  tmpdir_free(root);
}

static void test_cgroup_v1(void **state) {
  (void)state;
  char *root = tmpdir_new();
  write_stat(root, 16, NULL, NULL);
  write_status(root, "0-15");
  tmpdir_write(root, "proc/self/cgroup",
               "12:memory:/kubepods/pod1\n4:cpu,cpuacct:/kubepods/pod1\n1:name=systemd:/\n");
  tmpdir_write(root, "sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/cpu.cfs_quota_us", "300000\n");
  tmpdir_write(root, "sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/cpu.cfs_period_us", "100000\n");
  tmpdir_write(root, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
  tmpdir_write(root, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
  lp_sched_cpu_limits_t l;
  assert_int_equal(lp_sched_cpu_limits(root, &l), 0);
  assert_int_equal(l.cgroup, 1);
  NEAR(l.quota_cpus, 3);
  NEAR(l.effective, 3);
  /* -1: no quota */
  tmpdir_write(root, "sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/cpu.cfs_quota_us", "-1\n");
  assert_int_equal(lp_sched_cpu_limits(root, &l), 0);
  NEAR(l.quota_cpus, 0);
  NEAR(l.effective, 16);
  /* garbage in the files is ignored, not trusted */
  tmpdir_write(root, "sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/cpu.cfs_quota_us", "lots\n");
  assert_int_equal(lp_sched_cpu_limits(root, &l), 0);
  NEAR(l.effective, 16);
  tmpdir_free(root);
}

static void test_no_files(void **state) {
  (void)state;
  char *root = tmpdir_new();
  lp_sched_cpu_limits_t l;
  assert_int_equal(lp_sched_cpu_limits(root, &l), LP_ENOENT);
  NEAR(l.effective, 1);
  lp_sched_source_t *src = NULL;
  assert_int_equal(lp_sched_source_cpu_new(root, &src), LP_EUNSUPP);
  assert_null(src);
  /* the real system answers something sane */
  assert_int_equal(lp_sched_cpu_limits(NULL, &l), 0);
  assert_true(l.effective > 0);
  assert_true(l.effective <= l.online || l.online == 0);
  assert_int_equal(lp_sched_source_cpu_new(NULL, &src), 0);
  lp_sched_sample_t smp;
  for (int i = 0; i < 2; i++) {
    memset(&smp, 0, sizeof smp);
    assert_int_equal(src->ops->sample(src, 1000u + 1000u * (unsigned)i, &smp), 0);
  }
  if (smp.fields & LP_SCHED_TEL_UTIL) assert_true(smp.util[0] >= 0 && smp.util[0] <= 1);
  lp_sched_source_free(src);
  tmpdir_free(root);
}

static void test_cpu_source(void **state) {
  (void)state;
  char *root = tmpdir_new();
  unsigned long long busy[4] = {100, 100, 100, 100}, idle[4] = {900, 900, 900, 900};
  write_stat(root, 4, busy, idle);
  write_status(root, "0-3");
  lp_sched_source_t *src = NULL;
  assert_int_equal(lp_sched_source_cpu_new(root, &src), 0);
  lp_sched_sample_t smp;
  memset(&smp, 0, sizeof smp);
  assert_int_equal(src->ops->sample(src, 1000, &smp), 0);
  assert_int_equal(smp.fields, 0); /* one reading gives no rate yet */
  /* every CPU: 60 busy of 100 jiffies */
  for (int i = 0; i < 4; i++) {
    busy[i] += 60;
    idle[i] += 40;
  }
  write_stat(root, 4, busy, idle);
  memset(&smp, 0, sizeof smp);
  assert_int_equal(src->ops->sample(src, 2000, &smp), 0);
  assert_true(smp.fields & LP_SCHED_TEL_UTIL);
  assert_int_equal(smp.util_mask, 1);
  NEAR(smp.util[0], 0.6);
  lp_sched_source_free(src);

  /* allowed CPUs 0-1 only: the busy CPUs 2 and 3 are somebody else's */
  write_status(root, "0-1");
  assert_int_equal(lp_sched_source_cpu_new(root, &src), 0);
  assert_int_equal(src->ops->sample(src, 1000, &smp), 0);
  busy[0] += 20;
  idle[0] += 80;
  busy[1] += 20;
  idle[1] += 80;
  busy[2] += 100;
  busy[3] += 100;
  write_stat(root, 4, busy, idle);
  memset(&smp, 0, sizeof smp);
  assert_int_equal(src->ops->sample(src, 2000, &smp), 0);
  NEAR(smp.util[0], 0.2);
  lp_sched_source_free(src);
  tmpdir_free(root);
}

/* A clock that moves 1 s on every reading, so two polls in the same millisecond still see time
 * pass. */
static uint64_t step_clock(void) {
  static uint64_t now = 100000;
  return now += 1000;
}

static void test_cpu_source_quota(void **state) {
  (void)state;
  char *root = tmpdir_new();
  write_stat(root, 8, NULL, NULL);
  write_status(root, "0-7");
  tmpdir_write(root, "proc/self/cgroup", "0::/\n");
  tmpdir_write(root, "sys/fs/cgroup/cgroup.controllers", "cpu\n");
  tmpdir_write(root, "sys/fs/cgroup/cpu.max", "100000 100000\n");
  tmpdir_write(root, "sys/fs/cgroup/cpu.stat", "usage_usec 5000000\nuser_usec 1\nsystem_usec 1\n");
  lp_sched_source_t *src = NULL;
  assert_int_equal(lp_sched_source_cpu_new(root, &src), 0);
  lp_sched_sample_t smp;
  memset(&smp, 0, sizeof smp);
  assert_int_equal(src->ops->sample(src, 10000, &smp), 0);
  /* the host stays idle, but the container used 0.9 s of its 1-CPU quota in 1 s */
  unsigned long long busy[8], idle[8];
  for (int i = 0; i < 8; i++) {
    busy[i] = 100;
    idle[i] = 1000;
  }
  write_stat(root, 8, busy, idle);
  tmpdir_write(root, "sys/fs/cgroup/cpu.stat", "usage_usec 5900000\nuser_usec 1\nsystem_usec 1\n");
  memset(&smp, 0, sizeof smp);
  assert_int_equal(src->ops->sample(src, 11000, &smp), 0);
  NEAR(smp.util[0], 0.9);
  lp_sched_source_free(src);

  /* the source feeds the scheduler: a CPU 90% busy has no room for a big job */
  lp_sched_t *s = NULL;
  lp_sched_opts_t o = LP_SCHED_OPTS_INIT;
  o.clock_ms = step_clock;
  assert_int_equal(lp_sched_new(&o, &s), 0);
  lp_sched_device_desc_t d = {LP_SCHED_DEV_CPU, "cpu", "cpu", "", 1, 0, 0, 0, 0};
  int idx;
  lp_sched_add_device(s, &d, &idx);
  assert_int_equal(lp_sched_source_cpu_new(root, &src), 0);
  lp_sched_attach_source(s, idx, src);
  lp_sched_poll(s);
  tmpdir_write(root, "sys/fs/cgroup/cpu.stat", "usage_usec 99900000\n");
  lp_sched_poll(s); /* 94 s of CPU in the clock's 1 s: the quota is saturated */
  lp_sched_device_info_t in;
  assert_int_equal(lp_sched_device_info(s, idx, &in), 0);
  assert_true(in.measured[0] > 999 && in.measured[0] <= 1000);
  lp_sched_free(s);
  tmpdir_free(root);
}

static void test_gpu_sources_skip(void **state) {
  (void)state;
  lp_sched_source_t *src = NULL;
  int rc = lp_sched_source_nvml_new(0, &src);
  /* without an NVIDIA driver: skipped; with one, it must sample */
  assert_true(rc == 0 || rc == LP_EUNSUPP || rc == LP_ENOENT);
  if (rc == 0) {
    lp_sched_sample_t smp;
    memset(&smp, 0, sizeof smp);
    assert_int_equal(src->ops->sample(src, 0, &smp), 0);
    lp_sched_source_free(src);
  } else {
    assert_null(src);
    assert_int_equal(lp_sched_source_nvml_new(0, &src), rc); /* second try: same, no crash */
    char uuid[96], drv[96];
    assert_int_equal(lp_sched_nvml_identity(0, uuid, sizeof uuid, drv, sizeof drv), rc);
  }

  char *root = tmpdir_new();
  assert_int_equal(lp_sched_source_intel_new(root, NULL, &src), LP_EUNSUPP);
  /* a PMU whose type the kernel doesn't know: perf_event_open fails, skipped */
  tmpdir_write(root, "sys/bus/event_source/devices/i915/type", "999999\n");
  tmpdir_write(root, "sys/bus/event_source/devices/i915/cpumask", "0\n");
  tmpdir_write(root, "sys/bus/event_source/devices/i915/events/vcs0-busy", "config=0x200000\n");
  tmpdir_write(root, "sys/bus/event_source/devices/i915/events/vcs0-busy.unit", "ns\n");
  tmpdir_write(root, "sys/bus/event_source/devices/i915/events/rcs0-busy", "config=0x0\n");
  assert_int_equal(lp_sched_source_intel_new(root, NULL, &src), LP_EUNSUPP);
  assert_null(src);
  assert_int_equal(lp_sched_source_intel_new(root, "i915_0000_03_00.0", &src), LP_EUNSUPP);
  tmpdir_free(root);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parsers),          cmocka_unit_test(test_cgroup_v2),
      cmocka_unit_test(test_cgroup_v1),        cmocka_unit_test(test_no_files),
      cmocka_unit_test(test_cpu_source),       cmocka_unit_test(test_cpu_source_quota),
      cmocka_unit_test(test_gpu_sources_skip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
