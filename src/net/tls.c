/* TLS on memory BIOs: the certificate (operator's or a kept self-signed one), the server context
 * with ALPN, and per-connection encrypt/decrypt between the socket and the HTTP layers. */
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

static void ssl_err_text(char *err, size_t errlen, const char *what) {
  unsigned long e = ERR_get_error();
  char buf[256] = "";
  if (e) ERR_error_string_n(e, buf, sizeof buf);
  snprintf(err, errlen, "%s%s%s", what, buf[0] ? ": " : "", buf);
  ERR_clear_error();
}

static int add_ext(X509 *cert, int nid, const char *value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
  X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
  if (!ex) return -1;
  int ok = X509_add_ext(cert, ex, -1);
  X509_EXTENSION_free(ex);
  return ok ? 0 : -1;
}

static char *bio_take(BIO *b, size_t *len) {
  char *p = NULL;
  long n = BIO_get_mem_data(b, &p);
  if (n <= 0) return NULL;
  char *out = malloc((size_t)n);
  if (out) memcpy(out, p, (size_t)n);
  *len = (size_t)n;
  return out;
}

/* A fresh self-signed ECDSA P-256 pair, shaped like go-livepeer's (server/cert.go). */
static int cert_generate(const char *host, const char *cert_path, const char *key_path, char *err,
                         size_t errlen) {
  int rc = LP_EIO;
  EVP_PKEY *pkey = EVP_EC_gen("P-256");
  X509 *cert = X509_new();
  BIO *kb = BIO_new(BIO_s_mem()), *cb = BIO_new(BIO_s_mem());
  char *kpem = NULL, *cpem = NULL;
  size_t klen = 0, clen = 0;
  if (!pkey || !cert || !kb || !cb) {
    ssl_err_text(err, errlen, "generating key");
    goto out;
  }
  uint8_t serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1) {
    ssl_err_text(err, errlen, "random serial");
    goto out;
  }
  serial[0] &= 0x7f;
  BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
  ASN1_INTEGER *sn = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
  BN_free(bn);
  if (!sn) goto out;
  X509_set_serialNumber(cert, sn);
  ASN1_INTEGER_free(sn);
  X509_set_version(cert, 2);
  X509_gmtime_adj(X509_getm_notBefore(cert), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert), 8765L * 3600);
  X509_set_pubkey(cert, pkey);
  X509_NAME *name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"lpod", -1, -1, 0);
  X509_set_issuer_name(cert, name);

  char san[300];
  unsigned char ipbuf[16];
  bool is_ip = inet_pton(AF_INET, host, ipbuf) == 1 || inet_pton(AF_INET6, host, ipbuf) == 1;
  /* go puts the host into DNSNames even for an IP; add an IP entry too so strict clients match */
  if (is_ip)
    snprintf(san, sizeof san, "DNS:%s,IP:%s", host, host);
  else
    snprintf(san, sizeof san, "DNS:%s", host);
  if (add_ext(cert, NID_basic_constraints, "critical,CA:TRUE") ||
      add_ext(cert, NID_key_usage, "critical,keyCertSign,digitalSignature") ||
      add_ext(cert, NID_ext_key_usage, "serverAuth") || add_ext(cert, NID_subject_alt_name, san)) {
    ssl_err_text(err, errlen, "certificate extensions");
    goto out;
  }
  if (!X509_sign(cert, pkey, EVP_sha256())) {
    ssl_err_text(err, errlen, "signing certificate");
    goto out;
  }
  /* SEC1 "EC PRIVATE KEY", as go writes it */
  if (!PEM_write_bio_PrivateKey_traditional(kb, pkey, NULL, NULL, 0, NULL, NULL) ||
      !PEM_write_bio_X509(cb, cert)) {
    ssl_err_text(err, errlen, "encoding PEM");
    goto out;
  }
  kpem = bio_take(kb, &klen);
  cpem = bio_take(cb, &clen);
  if (!kpem || !cpem) {
    rc = LP_ENOMEM;
    snprintf(err, errlen, "out of memory");
    goto out;
  }
  if (lp_file_write_atomic(key_path, kpem, klen, 0600) ||
      lp_file_write_atomic(cert_path, cpem, clen, 0644)) {
    snprintf(err, errlen, "writing %s: %s", key_path, strerror(errno));
    goto out;
  }
  rc = 0;
out:
  if (kpem) OPENSSL_cleanse(kpem, klen);
  free(kpem);
  free(cpem);
  BIO_free(kb);
  BIO_free(cb);
  X509_free(cert);
  EVP_PKEY_free(pkey);
  return rc;
}

/* The kept pair is reused when both files load, match and the certificate has a week left. */
static bool cert_usable(const char *cert_path, const char *key_path) {
  bool ok = false;
  FILE *cf = fopen(cert_path, "r"), *kf = fopen(key_path, "r");
  X509 *cert = cf ? PEM_read_X509(cf, NULL, NULL, NULL) : NULL;
  EVP_PKEY *key = kf ? PEM_read_PrivateKey(kf, NULL, NULL, NULL) : NULL;
  if (cert && key && X509_check_private_key(cert, key)) {
    time_t soon = time(NULL) + 7 * 24 * 3600;
    ok = X509_cmp_time(X509_get0_notAfter(cert), &soon) > 0;
  }
  ERR_clear_error();
  X509_free(cert);
  EVP_PKEY_free(key);
  if (cf) fclose(cf);
  if (kf) fclose(kf);
  return ok;
}

int net_cert_ensure(const char *dir, const char *host, char **cert_path, char **key_path, char *err,
                    size_t errlen) {
  size_t n = strlen(dir) + 16;
  char *cp = malloc(n), *kp = malloc(n);
  if (!cp || !kp) {
    free(cp);
    free(kp);
    return LP_ENOMEM;
  }
  snprintf(cp, n, "%s/cert.pem", dir);
  snprintf(kp, n, "%s/key.pem", dir);
  int rc = lp_mkdir_p(dir, 0700);
  if (rc) {
    snprintf(err, errlen, "creating %s: %s", dir, strerror(errno));
  } else if (cert_usable(cp, kp)) {
    /* a key left readable by others is tightened rather than trusted as is */
    struct stat st;
    if (stat(kp, &st) == 0 && (st.st_mode & 077)) chmod(kp, 0600);
  } else {
    rc = cert_generate(host ? host : "localhost", cp, kp, err, errlen);
    if (rc == 0) LOGI("Generated self-signed TLS certificate %s", cp);
  }
  if (rc) {
    free(cp);
    free(kp);
    return rc;
  }
  *cert_path = cp;
  *key_path = kp;
  return 0;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
  static const unsigned char prefs[] = "\x02h2\x08http/1.1";
  unsigned char *sel = NULL;
  /* server preference: h2 whenever offered, because grpc-go insists on it */
  if (SSL_select_next_proto(&sel, outlen, prefs, sizeof prefs - 1, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

int net_tls_ctx_new(net_server_t *s, char *err, size_t errlen) {
  char *cert = NULL, *key = NULL;
  int rc;
  if (s->opts.cert_file || s->opts.key_file) {
    if (!s->opts.cert_file || !s->opts.key_file) {
      snprintf(err, errlen, "both a TLS certificate and a key file are needed");
      return LP_EINVAL;
    }
    cert = strdup(s->opts.cert_file);
    key = strdup(s->opts.key_file);
    if (!cert || !key) {
      free(cert);
      free(key);
      return LP_ENOMEM;
    }
  } else {
    if (!s->opts.cert_dir) {
      snprintf(err, errlen, "no TLS certificate given and no directory to keep one in");
      return LP_EINVAL;
    }
    rc = net_cert_ensure(s->opts.cert_dir, s->opts.cert_host, &cert, &key, err, errlen);
    if (rc) return rc;
  }
  rc = LP_EINVAL;
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) {
    ssl_err_text(err, errlen, "TLS context");
    goto fail;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  /* HTTP/2 (RFC 7540 9.2) forbids renegotiation and compression */
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
  /* idle connections then hold no 16 KiB record buffers: 1000s of them stay cheap */
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
    ssl_err_text(err, errlen, "loading TLS certificate");
    goto fail;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    ssl_err_text(err, errlen, "loading TLS key");
    goto fail;
  }
  SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
  s->ssl_ctx = ctx;
  s->cert_path = cert;
  free(key);
  return 0;
fail:
  SSL_CTX_free(ctx);
  free(cert);
  free(key);
  return rc;
}

/* The connection's BIO: reads come straight from the socket read buffer being processed (what
 * OpenSSL leaves is kept in tls_left), and writes append ciphertext to the buffer that the next
 * uv_write takes. Nothing stays allocated on an idle connection, unlike BIO_s_mem, whose buffers
 * keep their largest size. */
static int cbio_write(BIO *b, const char *data, int len) {
  net_conn_t *c = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  return lp_buf_append(&c->tls_wire, data, (size_t)len) ? -1 : len;
}

static int cbio_read(BIO *b, char *out, int len) {
  net_conn_t *c = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  size_t avail = c->tls_in_len - c->tls_in_off;
  if (avail == 0) {
    BIO_set_retry_read(b);
    return -1;
  }
  size_t n = LP_MIN(avail, (size_t)len);
  memcpy(out, c->tls_in + c->tls_in_off, n);
  c->tls_in_off += n;
  return (int)n;
}

static long cbio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  net_conn_t *c = BIO_get_data(b);
  switch (cmd) {
  case BIO_CTRL_FLUSH: return 1;
  case BIO_CTRL_PENDING: return (long)(c->tls_in_len - c->tls_in_off);
  case BIO_CTRL_WPENDING: return 0;
  default: return 0;
  }
}

static int cbio_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

static BIO_METHOD *g_bio_meth;

static BIO_METHOD *conn_bio_method(void) {
  if (g_bio_meth) return g_bio_meth;
  BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "lpod-conn");
  if (!m) return NULL;
  BIO_meth_set_write(m, cbio_write);
  BIO_meth_set_read(m, cbio_read);
  BIO_meth_set_ctrl(m, cbio_ctrl);
  BIO_meth_set_create(m, cbio_create);
  g_bio_meth = m;
  return m;
}

int net_tls_conn_init(net_conn_t *c) {
  BIO_METHOD *m = conn_bio_method();
  c->ssl = SSL_new(c->srv->ssl_ctx);
  BIO *b = m ? BIO_new(m) : NULL;
  if (!c->ssl || !b) {
    BIO_free(b);
    return LP_ENOMEM;
  }
  BIO_set_data(b, c);
  SSL_set_bio(c->ssl, b, b);
  SSL_set_accept_state(c->ssl);
  return 0;
}

int net_tls_encrypt(net_conn_t *c, lp_buf_t *dst) {
  size_t off = 0;
  int rc = 0;
  while (off < c->out.len) {
    size_t n = LP_MIN(c->out.len - off, (size_t)1 << 20);
    int w = SSL_write(c->ssl, c->out.data + off, (int)n);
    if (w <= 0) {
      ERR_clear_error();
      rc = LP_EIO;
      break;
    }
    off += (size_t)w;
  }
  /* a big response leaves a big buffer behind; idle connections should not keep it */
  if (c->out.cap > 64 * 1024)
    lp_buf_free(&c->out);
  else
    c->out.len = 0;
  *dst = c->tls_wire;
  c->tls_wire = (lp_buf_t)LP_BUF_INIT;
  return rc;
}

/* Runs the handshake and decrypts whatever tls_in holds. */
static int tls_process(net_conn_t *c) {
  if (!c->handshake_done) {
    int r = SSL_do_handshake(c->ssl);
    if (r != 1) {
      int e = SSL_get_error(c->ssl, r);
      ERR_clear_error();
      net_conn_flush(c);
      return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : LP_EPROTO;
    }
    c->handshake_done = true;
    const unsigned char *alpn = NULL;
    unsigned int alen = 0;
    SSL_get0_alpn_selected(c->ssl, &alpn, &alen);
    net_conn_set_proto(c, alen == 2 && memcmp(alpn, "h2", 2) == 0 ? NET_PROTO_H2 : NET_PROTO_H1);
    net_conn_flush(c);
    if (c->closing) return 0;
  }
  uint8_t buf[16384];
  for (;;) {
    int n = SSL_read(c->ssl, buf, sizeof buf);
    if (n > 0) {
      net_conn_on_plain(c, buf, (size_t)n);
      if (c->closing) return 0;
      continue;
    }
    int e = SSL_get_error(c->ssl, n);
    ERR_clear_error();
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
    if (e == SSL_ERROR_ZERO_RETURN) return LP_EIO; /* close_notify: the peer is done */
    return LP_EPROTO;
  }
  /* reads can produce output (alerts, key updates, tickets) */
  if (c->tls_wire.len) net_conn_flush(c);
  return 0;
}

int net_tls_feed(net_conn_t *c, const uint8_t *data, size_t len) {
  lp_buf_t held = c->tls_left;
  c->tls_left = (lp_buf_t)LP_BUF_INIT;
  if (held.len) {
    /* bytes OpenSSL did not take last time go first */
    if (lp_buf_append(&held, data, len)) {
      lp_buf_free(&held);
      return LP_ENOMEM;
    }
    data = held.data;
    len = held.len;
  }
  c->tls_in = data;
  c->tls_in_len = len;
  c->tls_in_off = 0;
  int rc = tls_process(c);
  if (rc == 0 && !c->closing && c->tls_in_off < c->tls_in_len &&
      lp_buf_append(&c->tls_left, c->tls_in + c->tls_in_off, c->tls_in_len - c->tls_in_off))
    rc = LP_ENOMEM;
  c->tls_in = NULL;
  c->tls_in_len = c->tls_in_off = 0;
  lp_buf_free(&held);
  return rc;
}
