/* CPU limits and busy from sample /proc and cgroup trees; NVML and the Intel PMU skip cleanly
 * where they are missing; NETINT's monitor report parsed, and its source run against a stand-in
 * for the monitor (a script that prints a report in its format), since no card is here. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
  lp_sched_device_desc_t d = {LP_SCHED_DEV_CPU, "cpu", "cpu", "", 1, 0, 0, 0, 0, false};
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

/* Each render node's own PMU, on a host with an integrated GPU (plain "i915"), a discrete i915
 * one and a discrete xe one (named by PCI address, colons as underscores). */
static void test_intel_pmu_for(void **state) {
  (void)state;
  char *root = tmpdir_new();
  static const char *const pmus[] = {"i915", "i915_0000_03_00.0", "xe_0000_04_00.0"};
  char p[4200], pmu[600];
  for (size_t i = 0; i < 3; i++) {
    snprintf(p, sizeof p, "sys/bus/event_source/devices/%s/type", pmus[i]);
    assert_int_equal(tmpdir_write(root, p, "42\n"), 0);
  }
  static const char *const nodes[][2] = {{"renderD128", "../../../0000:00:02.0"},
                                         {"renderD129", "../../../0000:03:00.0"},
                                         {"renderD130", "../../../0000:04:00.0"}};
  for (size_t i = 0; i < 3; i++) {
    snprintf(p, sizeof p, "sys/class/drm/%s/x", nodes[i][0]);
    assert_int_equal(tmpdir_write(root, p, ""), 0);
    snprintf(p, sizeof p, "%s/sys/class/drm/%s/device", root, nodes[i][0]);
    assert_int_equal(symlink(nodes[i][1], p), 0);
  }
  assert_int_equal(lp_sched_intel_pmu_for(root, "renderD128", pmu, sizeof pmu), 0);
  assert_string_equal(pmu, "i915");
  assert_int_equal(lp_sched_intel_pmu_for(root, "renderD129", pmu, sizeof pmu), 0);
  assert_string_equal(pmu, "i915_0000_03_00.0");
  assert_int_equal(lp_sched_intel_pmu_for(root, "renderD130", pmu, sizeof pmu), 0);
  assert_string_equal(pmu, "xe_0000_04_00.0");
  assert_int_equal(lp_sched_intel_pmu_for(root, "renderD131", pmu, sizeof pmu), LP_ENOENT);
  assert_int_equal(lp_sched_intel_pmu_for(root, "../renderD128", pmu, sizeof pmu), LP_EINVAL);
  tmpdir_free(root);
  /* without the integrated GPU's PMU, a GPU whose own is missing has none */
  root = tmpdir_new();
  assert_int_equal(tmpdir_write(root, "sys/bus/event_source/devices/xe_0000_04_00.0/type", "42\n"),
                   0);
  assert_int_equal(tmpdir_write(root, "sys/class/drm/renderD128/x", ""), 0);
  snprintf(p, sizeof p, "%s/sys/class/drm/renderD128/device", root);
  assert_int_equal(symlink("../../../0000:03:00.0", p), 0);
  assert_int_equal(lp_sched_intel_pmu_for(root, "renderD128", pmu, sizeof pmu), LP_ENOENT);
  tmpdir_free(root);
}

/* A symlink root/rel -> target, with the folders on the way. */
static void link_at(const char *root, const char *rel, const char *target) {
  char p[4200];
  snprintf(p, sizeof p, "%s.x", rel);
  assert_int_equal(tmpdir_write(root, p, ""), 0);
  snprintf(p, sizeof p, "%s/%s.x", root, rel);
  unlink(p);
  snprintf(p, sizeof p, "%s/%s", root, rel);
  unlink(p);
  assert_int_equal(symlink(target, p), 0);
}

/* An i915 client's fdinfo: video and video-enhance busy ns (enhance < 0: no such line). */
static void i915_fdinfo(const char *root, int pid, int fd, const char *pdev, int client,
                        long long video, long long enhance) {
  char rel[128], text[1024], pd[96] = "";
  if (pdev) snprintf(pd, sizeof pd, "drm-pdev:\t%s\n", pdev);
  int n = snprintf(text, sizeof text,
                   "pos:\t0\nflags:\t02100002\ndrm-driver:\ti915\n%sdrm-client-id:\t%d\n"
                   "drm-engine-render:\t5000 ns\ndrm-engine-video:\t%lld ns\n"
                   "drm-engine-capacity-video:\t2\n",
                   pd, client, video);
  if (enhance >= 0)
    snprintf(text + n, sizeof text - (size_t)n, "drm-engine-video-enhance:\t%lld ns\n", enhance);
  snprintf(rel, sizeof rel, "proc/%d/fdinfo/%d", pid, fd);
  assert_int_equal(tmpdir_write(root, rel, text), 0);
}

static void test_drm_fdinfo_parse(void **state) {
  (void)state;
  lp_sched_drm_client_t c;
  assert_int_equal(lp_sched_drm_fdinfo_parse("drm-driver:\txe\ndrm-client-id:\t3\n"
                                             "drm-pdev:\t0000:03:00.0\n"
                                             "drm-cycles-rcs:\t28257900\n"
                                             "drm-total-cycles-rcs:\t7655183225\n"
                                             "drm-cycles-vcs:\t1200\n"
                                             "drm-total-cycles-vcs:\t7655183225\n"
                                             "drm-engine-capacity-vcs:\t2\n"
                                             "drm-cycles-vecs:\t0\n"
                                             "drm-total-cycles-vecs:\t7655183225\n",
                                             &c),
                   0);
  assert_string_equal(c.driver, "xe");
  assert_string_equal(c.pdev, "0000:03:00.0");
  assert_true(c.id == 3 && c.busy[0] == 1200 && c.busy[1] == 0);
  assert_true(c.total[0] == 7655183225ull && c.total[1] == 7655183225ull);
  assert_int_equal(c.capacity[0], 2);
  assert_int_equal(c.capacity[1], 0);
  assert_int_equal(c.has, 3);
  /* i915: video-enhance is its own key, not video's; units after the number */
  assert_int_equal(lp_sched_drm_fdinfo_parse("drm-client-id: 9\ndrm-engine-video-enhance: 70 ns\n"
                                             "drm-engine-capacity-video-enhance: 99\n",
                                             &c),
                   0);
  assert_true(c.busy[0] == 0 && c.busy[1] == 70 && c.has == 2);
  assert_int_equal(c.capacity[1], 0); /* 99 engines of a class: not believed */
  /* no client id: not a DRM client's text; garbage numbers are not read */
  assert_int_equal(lp_sched_drm_fdinfo_parse("drm-engine-video: 5 ns\n", &c), LP_ENOENT);
  assert_int_equal(lp_sched_drm_fdinfo_parse("drm-client-id: 1\ndrm-engine-video: x\n", &c), 0);
  assert_int_equal(c.has, 0);
  assert_int_equal(lp_sched_drm_fdinfo_parse("", &c), LP_ENOENT);
}

/* The node (pid 100) and its worker (pid 200) hold clients of the GPU at 0000:00:02.0
 * (renderD128); the worker also one of another GPU. Each client counts once, however many of
 * its files are open, and only this GPU's. */
static void test_drm_fdinfo_source(void **state) {
  (void)state;
  char *root = tmpdir_new();
  link_at(root, "sys/class/drm/renderD128/device", "../../../0000:00:02.0");
  link_at(root, "proc/self", "100");
  assert_int_equal(tmpdir_write(root, "proc/100/task/100/children", "200 "), 0);
  assert_int_equal(tmpdir_write(root, "proc/100/task/101/children", ""), 0);
  link_at(root, "proc/100/fd/3", "/dev/dri/renderD128");
  link_at(root, "proc/100/fd/4", "socket:[4711]");
  link_at(root, "proc/100/fd/5", "/dev/dri/renderD128"); /* the same client, dup'ed */
  link_at(root, "proc/200/fd/3", "/dev/dri/renderD128");
  link_at(root, "proc/200/fd/4", "/dev/dri/renderD129");
  assert_int_equal(tmpdir_write(root, "proc/100/fd/6.txt", ""), 0); /* not a link: skipped */
  i915_fdinfo(root, 100, 3, "0000:00:02.0", 7, 1000000000, 0);
  i915_fdinfo(root, 100, 5, "0000:00:02.0", 7, 1000000000, 0);
  i915_fdinfo(root, 200, 3, "0000:00:02.0", 9, 0, 0);
  i915_fdinfo(root, 200, 4, "0000:03:00.0", 11, 0, 0);
  lp_sched_source_t *src = NULL;
  assert_int_equal(lp_sched_source_drm_fdinfo_new(root, "renderD128", &src), 0);
  assert_string_equal(src->ops->name, "drm-fdinfo");
  lp_sched_sample_t smp;
  memset(&smp, 0, sizeof smp);
  assert_int_equal(src->ops->sample(src, 1000, &smp), 0);
  assert_int_equal(smp.fields, 0); /* nothing to count against yet */
  /* one second: the node's client 0.5 s of video, the worker's 0.3 s and 0.2 s of scaling; the
   * other GPU's client is busy too, and not counted */
  i915_fdinfo(root, 100, 3, "0000:00:02.0", 7, 1500000000, 0);
  i915_fdinfo(root, 100, 5, "0000:00:02.0", 7, 1500000000, 0);
  i915_fdinfo(root, 200, 3, "0000:00:02.0", 9, 300000000, 200000000);
  i915_fdinfo(root, 200, 4, "0000:03:00.0", 11, 900000000, 900000000);
  memset(&smp, 0, sizeof smp);
  assert_int_equal(src->ops->sample(src, 2000, &smp), 0);
  assert_true(smp.fields & LP_SCHED_TEL_UTIL);
  assert_int_equal(smp.util_mask, 3);
  assert_true(fabs(smp.util[0] - 0.4) < 1e-9); /* 0.8 s over two video engines */
  assert_true(fabs(smp.util[1] - 0.2) < 1e-9); /* one video-enhance engine */
  /* the worker's client closed and a new one opened: it counts from its start, the gone one not */
  i915_fdinfo(root, 200, 3, "0000:00:02.0", 13, 100000000, -1);
  memset(&smp, 0, sizeof smp);
  assert_int_equal(src->ops->sample(src, 4000, &smp), 0);
  assert_true(fabs(smp.util[0] - 0.025) < 1e-9); /* 0.1 s over 2 s and two engines */
  assert_true(smp.util[1] == 0);
  lp_sched_source_free(src);

  /* where fdinfo names no device, the node the file opened decides */
  i915_fdinfo(root, 100, 3, NULL, 7, 1500000000, 0);
  i915_fdinfo(root, 100, 5, NULL, 7, 1500000000, 0);
  i915_fdinfo(root, 200, 3, NULL, 13, 100000000, 0);
  i915_fdinfo(root, 200, 4, NULL, 11, 900000000, 900000000);
  assert_int_equal(lp_sched_source_drm_fdinfo_new(root, "renderD128", &src), 0);
  memset(&smp, 0, sizeof smp);
  assert_int_equal(src->ops->sample(src, 1000, &smp), 0);
  i915_fdinfo(root, 100, 3, NULL, 7, 1900000000, 0);
  i915_fdinfo(root, 100, 5, NULL, 7, 1900000000, 0);
  i915_fdinfo(root, 200, 4, NULL, 11, 1900000000, 1900000000);
  memset(&smp, 0, sizeof smp);
  assert_int_equal(src->ops->sample(src, 2000, &smp), 0);
  assert_true(fabs(smp.util[0] - 0.2) < 1e-9);
  assert_true(smp.util[1] == 0);
  lp_sched_source_free(src);
  tmpdir_free(root);

  /* xe: each client's cycles over the GPU's timestamp, over the class's engines; a client first
   * seen has no timestamp to count against yet */
  root = tmpdir_new();
  link_at(root, "proc/self", "100");
  link_at(root, "proc/100/fd/3", "/dev/dri/renderD128");
  link_at(root, "proc/100/fd/4", "/dev/dri/renderD128");
  static const char *xe = "drm-driver:\txe\ndrm-client-id:\t%d\ndrm-cycles-vcs:\t%d\n"
                          "drm-total-cycles-vcs:\t%d\ndrm-engine-capacity-vcs:\t2\n"
                          "drm-cycles-vecs:\t%d\ndrm-total-cycles-vecs:\t%d\n";
  char text[512];
  snprintf(text, sizeof text, xe, 1, 1000, 50000, 0, 50000);
  assert_int_equal(tmpdir_write(root, "proc/100/fdinfo/3", text), 0);
  assert_int_equal(lp_sched_source_drm_fdinfo_new(root, "renderD128", &src), 0);
  memset(&smp, 0, sizeof smp);
  assert_int_equal(src->ops->sample(src, 1000, &smp), 0);
  snprintf(text, sizeof text, xe, 1, 1300, 51000, 500, 51000);
  assert_int_equal(tmpdir_write(root, "proc/100/fdinfo/3", text), 0);
  snprintf(text, sizeof text, xe, 2, 900, 51000, 0, 51000);
  assert_int_equal(tmpdir_write(root, "proc/100/fdinfo/4", text), 0);
  memset(&smp, 0, sizeof smp);
  assert_int_equal(src->ops->sample(src, 3000, &smp), 0); /* the wall clock plays no part */
  assert_true(fabs(smp.util[0] - 0.15) < 1e-9);           /* 300 of 1000 ticks, two engines */
  assert_true(fabs(smp.util[1] - 0.5) < 1e-9); /* no capacity line for vecs: one engine */
  lp_sched_source_free(src);
  tmpdir_free(root);
  /* no fdinfo in /proc: not offered */
  root = tmpdir_new();
  assert_int_equal(lp_sched_source_drm_fdinfo_new(root, "renderD128", &src), LP_EUNSUPP);
  assert_int_equal(lp_sched_source_drm_fdinfo_new(root, "../x", &src), LP_EINVAL);
  tmpdir_free(root);
}

/* The xe PMU: an engine's activity counters are built from the PMU's own format fields and
 * event terms, whatever bits the kernel puts them in. */
static void test_xe_engine_configs(void **state) {
  (void)state;
  char *root = tmpdir_new();
  const char *dev = "sys/bus/event_source/devices/xe_0000_03_00.0";
  char p[512];
  uint64_t act = 0, tot = 0;
  /* a kernel whose xe PMU has no engine activity yet */
  snprintf(p, sizeof p, "%s/format/event", dev);
  tmpdir_write(root, p, "config:0-11\n");
  snprintf(p, sizeof p, "%s/format/gt", dev);
  tmpdir_write(root, p, "config:60-63\n");
  assert_int_equal(lp_sched_xe_engine_configs(root, "xe_0000_03_00.0", 0, 2, 0, &act, &tot),
                   LP_ENOENT);
  snprintf(p, sizeof p, "%s/format/engine_class", dev);
  tmpdir_write(root, p, "config:20-27\n");
  snprintf(p, sizeof p, "%s/format/engine_instance", dev);
  tmpdir_write(root, p, "config:12-19\n");
  snprintf(p, sizeof p, "%s/events/engine-active-ticks", dev);
  tmpdir_write(root, p, "event=0x02\n");
  assert_int_equal(lp_sched_xe_engine_configs(root, "xe_0000_03_00.0", 0, 2, 0, &act, &tot),
                   LP_ENOENT); /* the total ticks are needed too */
  snprintf(p, sizeof p, "%s/events/engine-total-ticks", dev);
  tmpdir_write(root, p, "event=0x03\n");
  /* gt 1 (a media GT), video decode class 2, instance 1 */
  assert_int_equal(lp_sched_xe_engine_configs(root, "xe_0000_03_00.0", 1, 2, 1, &act, &tot), 0);
  assert_true(act == (0x02ull | 1ull << 12 | 2ull << 20 | 1ull << 60));
  assert_true(tot == (0x03ull | 1ull << 12 | 2ull << 20 | 1ull << 60));
  /* a value past its field is refused, not spilled into the next */
  assert_int_equal(lp_sched_xe_engine_configs(root, "xe_0000_03_00.0", 0, 2, 256, &act, &tot),
                   LP_ERANGE);
  assert_int_equal(lp_sched_xe_engine_configs(root, "xe_0000_03_00.0", 16, 2, 0, &act, &tot),
                   LP_ERANGE);
  /* fields elsewhere, one of a single bit */
  snprintf(p, sizeof p, "%s/format/engine_instance", dev);
  tmpdir_write(root, p, "config:40\n");
  assert_int_equal(lp_sched_xe_engine_configs(root, "xe_0000_03_00.0", 0, 3, 1, &act, &tot), 0);
  assert_true(act == (0x02ull | 3ull << 20 | 1ull << 40));
  assert_int_equal(lp_sched_xe_engine_configs(root, "xe_0000_03_00.0", 0, 3, 2, &act, &tot),
                   LP_ERANGE);
  tmpdir_write(root, p, "config1:0-7\n"); /* another config word: not one this reads */
  assert_int_equal(lp_sched_xe_engine_configs(root, "xe_0000_03_00.0", 0, 3, 0, &act, &tot),
                   LP_EINVAL);
  tmpdir_write(root, p, "config:12-19\n");
  snprintf(p, sizeof p, "%s/events/engine-total-ticks", dev);
  tmpdir_write(root, p, "umask=0x03\n");
  assert_int_equal(lp_sched_xe_engine_configs(root, "xe_0000_03_00.0", 0, 2, 0, &act, &tot),
                   LP_EINVAL);
  tmpdir_write(root, p, "event=0x03\n");

  /* the source picks the xe PMU when there is no i915 one; a type the kernel doesn't know opens
   * no engine, so it is skipped */
  snprintf(p, sizeof p, "%s/type", dev);
  tmpdir_write(root, p, "999999\n");
  snprintf(p, sizeof p, "%s/cpumask", dev);
  tmpdir_write(root, p, "0\n");
  lp_sched_source_t *src = NULL;
  assert_int_equal(lp_sched_source_intel_new(root, NULL, &src), LP_EUNSUPP);
  assert_null(src);
  assert_int_equal(lp_sched_source_intel_new(root, "xe_0000_03_00.0", &src), LP_EUNSUPP);
  assert_null(src);
  tmpdir_free(root);
}

/* One card's objects as ni_rsrc_mon -o json prints them, one object per kind of subsystem. */
static size_t ni_card(char *out, size_t cap, int card, int dec_load, int dec_fw, int dec_inst,
                      int enc_load, int enc_fw, int enc_inst) {
  static const char *const kinds[] = {"decoder", "encoder", "scaler", "AI", "uploader", "nvme"};
  size_t off = 0;
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    int load = k == 0 ? dec_load : k == 1 ? enc_load : k == 2 ? 7 : 90;
    int fw = k == 0 ? dec_fw : k == 1 ? enc_fw : 3;
    int inst = k == 0 ? dec_inst : k == 1 ? enc_inst : 1;
    off +=
        (size_t)snprintf(out + off, cap - off,
                         "{ \"%s\" :\n\t[\n\t\t{\n\t\t\t\"NUMBER\": 2,\n\t\t\t\"INDEX\": %d,\n"
                         "\t\t\t\"LOAD\": %d,\n\t\t\t\"MODEL_LOAD\": 0,\n\t\t\t\"FW_LOAD\": %d,\n"
                         "\t\t\t\"INST\": %d,\n\t\t\t\"MAX_INST\": 128,\n\t\t\t\"MEM\": 4,\n"
                         "\t\t\t\"DEVICE\": \"/dev/nvme%dn1\",\n\t\t\t\"FR\": \"6r4\",\n"
                         "\t\t\t\"NUMA_NODE\": 0,\n\t\t\t\"PCIE_ADDR\": \"0000:41:00.0\"\n"
                         "\t\t}\n\t]\n}\n",
                         kinds[k], card, load, fw, inst, card);
  }
  return off;
}

static void test_netint_parse(void **state) {
  (void)state;
  char rep[16384];
  size_t off = ni_card(rep, sizeof rep, 0, 30, 5, 2, 40, 55, 6);
  ni_card(rep + off, sizeof rep - off, 1, 150, 0, 0, 10, 0, 1);
  lp_sched_sample_t s;
  assert_int_equal(lp_sched_netint_parse(rep, 0, &s), 0);
  assert_int_equal(s.fields,
                   LP_SCHED_TEL_UTIL | LP_SCHED_TEL_ENC_SESSIONS | LP_SCHED_TEL_DEC_SESSIONS);
  assert_int_equal(s.util_mask, 7u); /* decoder, scaler, encoder; AI, uploader, nvme ignored */
  NEAR(s.util[0], 0.30);
  NEAR(s.util[1], 0.07);
  NEAR(s.util[2], 0.55); /* the firmware's load is the larger */
  assert_int_equal(s.dec_sessions, 2);
  assert_int_equal(s.enc_sessions, 6);
  assert_int_equal(lp_sched_netint_parse(rep, 1, &s), 0);
  NEAR(s.util[0], 1.0); /* past 100: held at full */
  NEAR(s.util[2], 0.10);
  assert_int_equal(s.enc_sessions, 1);
  assert_int_equal(lp_sched_netint_parse(rep, 2, &s), LP_ENOENT);

  /* as the monitor prints it at its default log level: banner lines around the objects */
  char banner[20000];
  snprintf(banner, sizeof banner,
           "**************************************************\n"
           "Sat Dec  5 04:00:00 2026 up 00:00:01 v6r4\n%s"
           "**************************************************\n",
           rep);
  assert_int_equal(lp_sched_netint_parse(banner, 0, &s), 0);
  NEAR(s.util[2], 0.55);
  assert_int_equal(lp_sched_netint_parse(banner, 1, &s), 0);
  NEAR(s.util[2], 0.10);

  /* no object at all, one that does not parse, or a report cut short */
  static const char *const bad[] = {"",
                                    "  \n",
                                    "ERROR: cannot access NI resource\n",
                                    "{ \"decoder\" : [ { \"INDEX\": 0, \"LOAD\": 3 }, ] }",
                                    "{ \"decoder\" : [ { \"INDEX\": 0, \"LOAD\": 3 } ] }\n{ \"enc",
                                    "[1, 2]"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(lp_sched_netint_parse(bad[i], 0, &s), LP_EINVAL);
  /* figures no card has: an index past any int is no card, an instance count past reason is
   * not read */
  assert_int_equal(lp_sched_netint_parse("{\"encoder\": [{\"INDEX\": 1e300, \"LOAD\": 5}]}", 0, &s),
                   LP_ENOENT);
  assert_int_equal(lp_sched_netint_parse(
                       "{\"encoder\": [{\"INDEX\": 0, \"LOAD\": -5, \"INST\": 1e300}]}", 0, &s),
                   0);
  assert_int_equal(s.fields, LP_SCHED_TEL_UTIL);
  NEAR(s.util[2], 0.0);
  /* a card listed without a load is not read */
  assert_int_equal(lp_sched_netint_parse("{\"encoder\": [{\"INDEX\": 0, \"INST\": 2}]}", 0, &s),
                   LP_ENOENT);
  assert_int_equal(lp_sched_netint_parse(NULL, 0, &s), LP_EINVAL);
}

/* The stand-in monitor: prints dir/report.json, or does what dir/mode says. */
static char *ni_tool(const char *dir) {
  char script[4096], *path = malloc(4200);
  assert_non_null(path);
  snprintf(script, sizeof script,
           "#!/bin/sh\n"
           "[ \"$1 $2\" = \"-o json\" ] || exit 64\n"
           "case \"$(cat '%s/mode' 2>/dev/null)\" in\n"
           "  fail) echo 'ERROR: no device' >&2; exit 3 ;;\n"
           "  hang) exec sleep 60 ;;\n"
           "  mute) exec >&-; exec sleep 60 ;;\n"
           "  text) echo 'Num decoders: 1' ;;\n"
           "  *) echo '****'; cat '%s/report.json'; echo '****' ;;\n"
           "esac\n",
           dir, dir);
  assert_int_equal(tmpdir_write(dir, "ni_rsrc_mon", script), 0);
  snprintf(path, 4200, "%s/ni_rsrc_mon", dir);
  assert_int_equal(chmod(path, 0755), 0);
  return path;
}

static void ni_set(const char *dir, const char *mode, int enc_load) {
  char rep[16384];
  size_t off = ni_card(rep, sizeof rep, 0, 20, 0, 1, enc_load, 0, 3);
  ni_card(rep + off, sizeof rep - off, 3, 0, 0, 0, 0, 0, 0);
  /* the report first, so the monitor never prints a half-written one with the mode cleared */
  assert_int_equal(tmpdir_write(dir, "report.json", rep), 0);
  assert_int_equal(tmpdir_write(dir, "mode", mode), 0);
}

/* Samples until want(rc, sample) holds; the monitor runs every 50 ms, so 10 s is ample. */
static int ni_wait(lp_sched_source_t *src, int want_rc, double want_enc) {
  lp_sched_sample_t s;
  int rc = 0;
  for (int i = 0; i < 1000; i++) {
    memset(&s, 0, sizeof s);
    rc = src->ops->sample(src, 0, &s);
    if (rc == want_rc && (rc || fabs(s.util[2] - want_enc) < 1e-9)) return rc;
    usleep(10 * 1000);
  }
  return rc == want_rc ? LP_ETIMEDOUT : rc;
}

static void test_netint_source(void **state) {
  (void)state;
  char *dir = tmpdir_new();
  char *tool = ni_tool(dir);
  lp_sched_source_t *a = NULL, *b = NULL, *none = NULL;

  /* missing, failing or printing no report: skipped */
  char missing[4200];
  snprintf(missing, sizeof missing, "%s/no_such_monitor", dir);
  assert_int_equal(lp_sched_source_netint_new(missing, 0, 50, &a), LP_EUNSUPP);
  ni_set(dir, "fail", 10);
  assert_int_equal(lp_sched_source_netint_new(tool, 0, 50, &a), LP_EUNSUPP);
  ni_set(dir, "text", 10);
  assert_int_equal(lp_sched_source_netint_new(tool, 0, 50, &a), LP_EUNSUPP);
  assert_null(a);

  ni_set(dir, "ok", 10);
  assert_int_equal(lp_sched_source_netint_new(tool, 0, 50, &a), 0);
  assert_int_equal(lp_sched_source_netint_new(tool, 3, 50, &b), 0);
  assert_int_equal(lp_sched_source_netint_new(tool, 1, 50, &none), LP_ENOENT);
  assert_null(none);
  lp_sched_sample_t s;
  memset(&s, 0, sizeof s);
  assert_int_equal(a->ops->sample(a, 0, &s), 0);
  NEAR(s.util[0], 0.20);
  NEAR(s.util[2], 0.10);
  assert_int_equal(s.enc_sessions, 3);
  assert_int_equal(ni_wait(b, 0, 0.0), 0);

  /* the thread reads new reports */
  ni_set(dir, "ok", 65);
  assert_int_equal(ni_wait(a, 0, 0.65), 0);
  /* a monitor that fails: the report goes stale and samples fail, then recover */
  ni_set(dir, "fail", 65);
  assert_int_equal(ni_wait(a, LP_EDEVICE, 0), LP_EDEVICE);
  ni_set(dir, "ok", 80);
  assert_int_equal(ni_wait(a, 0, 0.80), 0);
  /* one card's source gone, the other still reads */
  lp_sched_source_free(b);
  ni_set(dir, "ok", 45);
  assert_int_equal(ni_wait(a, 0, 0.45), 0);
  /* a monitor that closes its output and hangs on: killed past the run's deadline (1 s), so
   * the next report comes when it answers again */
  ni_set(dir, "mute", 45);
  assert_int_equal(ni_wait(a, LP_EDEVICE, 0), LP_EDEVICE);
  ni_set(dir, "ok", 55);
  assert_int_equal(ni_wait(a, 0, 0.55), 0);
  /* a monitor that hangs (sleep 60): samples go stale, and freeing the last source ends the
   * run and kills it (waiting for it would pass the test's 30 s limit) */
  ni_set(dir, "hang", 45);
  assert_int_equal(ni_wait(a, LP_EDEVICE, 0), LP_EDEVICE);
  lp_sched_source_free(a);

  /* started again after the last source went */
  ni_set(dir, "ok", 30);
  assert_int_equal(lp_sched_source_netint_new(tool, 0, 50, &a), 0);
  memset(&s, 0, sizeof s);
  assert_int_equal(a->ops->sample(a, 0, &s), 0);
  NEAR(s.util[2], 0.30);
  lp_sched_source_free(a);
  free(tool);
  tmpdir_free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parsers),           cmocka_unit_test(test_cgroup_v2),
      cmocka_unit_test(test_cgroup_v1),         cmocka_unit_test(test_no_files),
      cmocka_unit_test(test_cpu_source),        cmocka_unit_test(test_cpu_source_quota),
      cmocka_unit_test(test_gpu_sources_skip),  cmocka_unit_test(test_intel_pmu_for),
      cmocka_unit_test(test_xe_engine_configs), cmocka_unit_test(test_netint_parse),
      cmocka_unit_test(test_netint_source),     cmocka_unit_test(test_drm_fdinfo_parse),
      cmocka_unit_test(test_drm_fdinfo_source),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
