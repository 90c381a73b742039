/* orch: the orchestrator side of the Livepeer protocol (spec/protocol.md): gRPC GetOrchestrator,
 * Ping and EndTranscodingSession, POST /segment, the sessions and the result store behind
 * GET /stream. Everything runs on the node's loop thread; transcoding runs on one worker
 * thread per active session. */
#ifndef LPOD_ORCH_H
#define LPOD_ORCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include <cjson/cJSON.h>

#include "lp_rpc.pb-c.h"
#include "lpod/config.h"
#include "lpod/hwaccel.h"

/* The payment seam: signatures, prices, tickets and balances come from here. orch carries the
 * offchain rules (orch_payments_offchain in the internals); the pm/eth modules provide the
 * on-chain implementation. Every function runs on the loop thread. */
typedef struct orch_payments {
  void *ctx;
  /* The node's ETH address: 20 zero bytes offchain. */
  uint8_t address[20];
  /* go-livepeer's orchestrator.VerifySig(addr, msg, sig): over keccak256(msg). */
  bool (*verify_sig)(void *ctx, const uint8_t addr[20], const void *msg, size_t len,
                     const uint8_t *sig, size_t sig_len);
  /* Sign(msg) (over keccak256(msg)) into a malloc'd *sig; offchain gives an empty one. */
  int (*sign_msg)(void *ctx, const void *msg, size_t len, uint8_t **sig, size_t *sig_len);
  /* Eth.Sign(hash) for TranscodeData.sig; offchain gives an empty one. */
  int (*sign_hash)(void *ctx, const uint8_t hash[32], uint8_t **sig, size_t *sig_len);
  /* Sets info->price_info and info->ticket_params for a sender (GetOrchestrator, /segment
   * step 3). What it sets must be allocated with malloc field by field the way protobuf-c's
   * unpack does: orch frees it with protobuf_c_message_free_unpacked. Offchain sets nothing. */
  int (*fill_info)(void *ctx, const uint8_t sender[20], const char *session_id,
                   Net__OrchestratorInfo *info);
  /* ProcessPayment (spec §9.4); on failure err holds the text B gets with a 400. */
  int (*process_payment)(void *ctx, const Net__Payment *p, const uint8_t sender[20],
                         const char *session_id, char *err, size_t errlen);
  /* The balance gate of /segment step 5. */
  bool (*sufficient_balance)(void *ctx, const Net__Payment *p, const uint8_t sender[20],
                             const char *session_id);
  /* DebitFees after a transcode (step 12). */
  void (*debit_fees)(void *ctx, const uint8_t sender[20], const char *session_id,
                     const Net__PriceInfo *price, int64_t pixels);
  /* Optional (NULL offchain). Chain state about a sender that fill_info and process_payment
   * read may first have to be fetched: 0 when it is at hand, LP_EAGAIN when ready(arg) will run
   * on the loop once it is (or once the fetch failed). Called after the request's signature
   * checked out, so unauthenticated requests cause no chain reads. */
  int (*prepare)(void *ctx, const uint8_t sender[20], void (*ready)(void *arg), void *arg);
  /* Optional. What process_payment accepted (winning tickets, nonces) is written durably off
   * the loop: 0 when everything accepted so far is stored, LP_EAGAIN when done(arg, status)
   * will run on the loop once it is. A segment's response completes only after this. */
  int (*flush)(void *ctx, void (*done)(void *arg, int status), void *arg);
} orch_payments_t;

typedef struct orch_node orch_node_t;

/* Starts the orchestrator service on cfg->http_addr (default: the service URI's port),
 * advertising cfg->service_addr. A -network other than offchain takes payments on chain.
 * The environment variable LPOD_SESSION_IDLE_MS overrides the 70 s session idle timeout
 * (tests use it to see the timeout without waiting a minute). */
int orch_node_start(uv_loop_t *loop, const lp_config_t *cfg, orch_node_t **out);
/* Stops accepting new work (GetOrchestrator and new segments are refused as capped), lets the
 * segments in flight finish and calls drained(arg) on the loop once none are left. */
void orch_node_stop(orch_node_t *n, void (*drained)(void *), void *arg);
/* Closes the listener and every handle; call after drained (or when giving up on it), then
 * run the loop until it has no more handles. */
void orch_node_free(orch_node_t *n);

/* For the admin API. /setMaxSessions: n > 0, or is_auto (a standalone orchestrator only: the
 * registered transcoders' capacity). LP_EINVAL when not allowed. */
int orch_node_set_max_sessions(orch_node_t *n, int max_sessions, bool is_auto);
/* /setTargetRealtimeRatio: the capacity model's headroom, in (0, 1]. LP_EUNSUPP where the node
 * admits by count (-costAdmission=false, or no local transcoding). */
int orch_node_set_target(orch_node_t *n, double ratio);
/* Adds go-livepeer's /status fields (RegisteredTranscodersNumber, LocalTranscoding) and lpod's
 * (Sessions, MaxSessions, SegmentsInFlight). */
void orch_node_status(orch_node_t *n, cJSON *status);
/* Sets the gauges read from the node's state (the capacity model's lpod_device_*): call before
 * rendering /metrics. */
void orch_node_metrics(orch_node_t *n);
/* One line for systemd's STATUS=: sessions, the cap, segments in flight, transcoders. */
void orch_node_summary(orch_node_t *n, char *out, size_t len);
/* Sessions open and segments in flight: zero when the node is idle. */
int orch_node_activity(orch_node_t *n);
/* Able to take work: not stopping, and a standalone orchestrator has a transcoder. */
bool orch_node_ready(orch_node_t *n, char *why, size_t whylen);

/* The device table of a transcoder (`-transcoder` without `-orchestrator`): probed and
 * self-tested by a child `lpod calibrate` as the node's is, or, for a -localWorkers child, read
 * from the file the node names in ORCH_DEVICE_TABLE_ENV, so that the node probes once for all
 * of its workers. Logs the table or why it failed. With -maxSessions auto (and -costAdmission)
 * the probe also calibrates the devices and *capacity is what the capacity model fits on them:
 * streams of its reference job (720p30 -> 360p30 H.264) at the target real-time ratio, every
 * device counted; otherwise, and for a -localWorkers child, *capacity is 0. */
#define ORCH_DEVICE_TABLE_ENV "LPOD_DEVICE_TABLE"
int orch_transcoder_devices(const lp_config_t *cfg, hw_table_t *t, int *capacity);

/* `lpod gateway`: discover an orchestrator, send segments, download the renditions. */
int orch_cli_gateway(int argc, char **argv);
/* `lpod calibrate [node flags]`: probes and self-tests the devices the flags select, measures
 * the capacity model's coefficients of those without a valid cache record (all of them with
 * -calibrate) into the data dir, and prints the device table as JSON on stdout. A node that
 * transcodes runs it as its start-up child process. */
int orch_cli_calibrate(int argc, char **argv);
/* `lpod bench -orchAddr ...`: N streams paced in real time against a running node. */
int orch_cli_bench_node(int argc, char **argv);

#endif
