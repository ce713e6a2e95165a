/*
 * test_sec.c - message security and the audit log (host/sec/):
 *   seal/open: round trip with a sealed header, a tampered byte, a
 *   wrong key, a ciphertext moved to another topic, a missing and a bad
 *   signature, Ed25519, rotation with a keyring reload, the keyring
 *   file's checks and the config refusals (file:line:col, the key);
 *   on the memory broker: handlers see plaintext, a message moved to
 *   another topic is dead-lettered with the reason and never handled,
 *   and the audit log has its lines with the sensitive fields redacted.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "check.h"
#include "core/host_int.h"
#include "core/intercept.h"
#include "sec/audit.h"
#include "sec/keyring.h"
#include "sec/msgsec.h"
#include "sec/sec.h"

static char dir[] = "/tmp/swit_test_sec_XXXXXX";
static char ring_path[256];

#define K1 "key k1 MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"
#define K2 "key k2 QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk=\n"

static void write_ring(const char *text, mode_t mode)
{
  FILE *f;
  unlink(ring_path);
  f = fopen(ring_path, "w");
  fputs(text, f);
  fclose(f);
  chmod(ring_path, mode);
}

static swit_config *load(const char *yaml)
{
  swit_config *cfg = NULL;
  char err[512];
  if (swit__config_load_string(&cfg, yaml, dir, err, sizeof err) != 0)
    fprintf(stderr, "  config: %s\n", err);
  return cfg;
}

static void *heap(void *ud, size_t n)
{
  (void)ud;
  return swit__msgsec_scratch_alloc(NULL, n);
}

static const char enc_sign_yaml[] =
  "messaging:\n"
  "  security:\n"
  "    message:\n"
  "      encryption: {enabled: true, key_provider: file, keyring: ring,\n"
  "                   topics: [\"orders*\"], headers: [x-secret]}\n"
  "      signing: {enabled: true, key_provider: file, keyring: ring}\n";

static swit_msg_view view(const char *topic, const char *payload,
                          const swit_header *h, uint32_t nh)
{
  swit_msg_view v = {0};
  v.topic = topic, v.topic_len = (uint32_t)strlen(topic);
  v.key = "k", v.key_len = 1;
  v.payload = payload, v.payload_len = strlen(payload);
  v.headers = h, v.nheaders = nh;
  return v;
}

static const swit_header *hfind(const swit_msg_view *v, const char *name)
{
  for (uint32_t i = 0; i < v->nheaders; i++)
    if (v->headers[i].name_len == strlen(name) &&
        !memcmp(v->headers[i].name, name, strlen(name)))
      return &v->headers[i];
  return NULL;
}

static void test_seal_open(void)
{
  swit_header hs[] = {{"x-secret", "s3", 8, 2}, {"x-plain", "p", 7, 1}};
  swit_msg_view in = view("orders", "{\"a\":1}", hs, 2), sealed, opened, bad;
  swit_config *cfg;
  swit__msgsec *s = NULL;
  char err[512], why[256], copy[512];
  swit_header hv[8];

  write_ring(K1 K2 "active k1\n", 0600);
  cfg = load(enc_sign_yaml);
  CHECK(cfg && swit__msgsec_new(&s, cfg, err, sizeof err) == 0 && s);
  if (!s) return;
  swit__msgsec_scratch_reset();
  CHECK(swit__msgsec_seal(s, &in, &sealed, heap, NULL, err, sizeof err) == 0);
  CHECK(memcmp(sealed.payload, "SWE\x01\x02k1", 6) == 0);
  CHECK(hfind(&sealed, "x-secret") == NULL && hfind(&sealed, "x-plain"));
  CHECK(hfind(&sealed, SWIT__HDR_ID) && hfind(&sealed, SWIT__HDR_SIG));
  CHECK(memmem(sealed.payload, sealed.payload_len, "\"a\"", 3) == NULL);
  /* round trip: the payload and the sealed header come back */
  CHECK(swit__msgsec_open(s, &sealed, &opened, heap, NULL, why,
                          sizeof why) == 0);
  CHECK(opened.payload_len == 7 && !memcmp(opened.payload, "{\"a\":1}", 7));
  CHECK(hfind(&opened, "x-secret") &&
        !memcmp(hfind(&opened, "x-secret")->value, "s3", 2));
  /* a topic nobody selected for encryption is signed only */
  {
    swit_msg_view o = view("audit", "plain", NULL, 0), so;
    CHECK(swit__msgsec_seal(s, &o, &so, heap, NULL, err, sizeof err) == 0);
    CHECK(so.payload_len == 5 && hfind(&so, SWIT__HDR_SIG));
  }
  /* one flipped ciphertext byte: the signature fails first */
  memcpy(copy, sealed.payload, sealed.payload_len);
  copy[sealed.payload_len - 20] ^= 1;
  bad = sealed;
  bad.payload = copy;
  CHECK(swit__msgsec_open(s, &bad, &opened, heap, NULL, why,
                          sizeof why) != 0);
  CHECK(strstr(why, "bad signature") != NULL);
  /* moved to another topic: signature and AAD both bind the topic */
  bad = sealed;
  bad.topic = "orders-eu", bad.topic_len = 9;
  CHECK(swit__msgsec_open(s, &bad, &opened, heap, NULL, why,
                          sizeof why) != 0);
  /* missing signature */
  memcpy(hv, sealed.headers, sealed.nheaders * sizeof *hv);
  bad = sealed;
  bad.headers = hv;
  bad.nheaders = sealed.nheaders - 1;   /* the signature is the last */
  CHECK(swit__msgsec_open(s, &bad, &opened, heap, NULL, why,
                          sizeof why) != 0);
  CHECK(strstr(why, "signature missing") != NULL);
  /* a hostile key id is shown bounded and printable */
  {
    char big[200];
    memset(big, 'A', sizeof big);
    big[3] = '\n';
    big[150] = ':';
    hv[sealed.nheaders - 1].value = big;
    hv[sealed.nheaders - 1].value_len = sizeof big;
    bad.nheaders = sealed.nheaders;
    CHECK(swit__msgsec_open(s, &bad, &opened, heap, NULL, why,
                            sizeof why) != 0);
    CHECK(strstr(why, "unknown signing key 'AAA?AAAA") != NULL);
    CHECK(strchr(why, '\n') == NULL && strlen(why) < 120);
  }
  swit__msgsec_free(s);
  swit__config_free(cfg);
}

/* Encryption alone: tamper, moved topic, wrong key, rotation + reload */
static void test_encryption_rotation(void)
{
  static const char yaml[] =
    "messaging:\n  security:\n    message:\n"
    "      encryption: {enabled: true, key_provider: file, keyring: ring}\n";
  swit_msg_view in = view("orders", "hello", NULL, 0), sealed, opened, bad;
  swit_config *cfg;
  swit__msgsec *s = NULL;
  char err[512], why[256], copy[512];

  write_ring(K1 "active k1\n", 0600);
  cfg = load(yaml);
  CHECK(cfg && swit__msgsec_new(&s, cfg, err, sizeof err) == 0 && s);
  if (!s) return;
  swit__msgsec_scratch_reset();
  CHECK(swit__msgsec_seal(s, &in, &sealed, heap, NULL, err, sizeof err) == 0);
  memcpy(copy, sealed.payload, sealed.payload_len);
  copy[sealed.payload_len - 1] ^= 0x80;                /* the tag */
  bad = sealed;
  bad.payload = copy;
  CHECK(swit__msgsec_open(s, &bad, &opened, heap, NULL, why, sizeof why));
  CHECK(strstr(why, "decryption failed") != NULL);
  bad = sealed;
  bad.topic = "payments", bad.topic_len = 8;
  CHECK(swit__msgsec_open(s, &bad, &opened, heap, NULL, why, sizeof why));
  CHECK(strstr(why, "moved from another topic") != NULL);
  bad = sealed;
  bad.key = "other", bad.key_len = 5;
  CHECK(swit__msgsec_open(s, &bad, &opened, heap, NULL, why, sizeof why));
  /* plaintext where ciphertext is expected */
  CHECK(swit__msgsec_open(s, &in, &opened, heap, NULL, why, sizeof why));
  CHECK(strstr(why, "not encrypted") != NULL);
  /* rotation: k2 becomes active, k1 still opens the old message */
  write_ring(K1 K2 "active k2\n", 0600);
  CHECK(swit__msgsec_reload(s, err, sizeof err) == 0);
  {
    swit_msg_view s2;
    CHECK(swit__msgsec_seal(s, &in, &s2, heap, NULL, err, sizeof err) == 0);
    CHECK(memcmp(s2.payload, "SWE\x01\x02k2", 6) == 0);
    CHECK(swit__msgsec_open(s, &sealed, &opened, heap, NULL, why,
                            sizeof why) == 0);
    CHECK(opened.payload_len == 5 && !memcmp(opened.payload, "hello", 5));
  }
  /* k1 retired: its messages fail with the key named */
  write_ring(K2 "active k2\n", 0600);
  CHECK(swit__msgsec_reload(s, err, sizeof err) == 0);
  CHECK(swit__msgsec_open(s, &sealed, &opened, heap, NULL, why, sizeof why));
  CHECK(strstr(why, "unknown encryption key 'k1'") != NULL);
  /* a bad ring on reload keeps the running one */
  write_ring("key k3 nope\n", 0600);
  CHECK(swit__msgsec_reload(s, err, sizeof err) == SWIT_E_CONFIG);
  CHECK(strstr(err, "line 1") != NULL);
  write_ring(K2 "active k2\n", 0644);
  CHECK(swit__msgsec_reload(s, err, sizeof err) == SWIT_E_CONFIG);
  CHECK(strstr(err, "chmod 600") != NULL);
  CHECK(swit__msgsec_seal(s, &in, &sealed, heap, NULL, err, sizeof err) == 0);
  swit__msgsec_free(s);
  swit__config_free(cfg);
}

static void test_ed25519(void)
{
  static const char yaml[] =
    "messaging:\n  security:\n    message:\n"
    "      signing: {enabled: true, algorithm: Ed25519, key_provider: env,\n"
    "                keyring: SWIT_TEST_SIGNING_KEYS}\n";
  swit_msg_view in = view("orders", "hello", NULL, 0), sealed, opened;
  swit_config *cfg;
  swit__msgsec *s = NULL;
  char err[512], why[256];

  setenv("SWIT_TEST_SIGNING_KEYS", "key e1 MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3"
         "ODlhYmNkZWY=; active e1", 1);
  cfg = load(yaml);
  CHECK(cfg && swit__msgsec_new(&s, cfg, err, sizeof err) == 0 && s);
  if (!s) return;
  swit__msgsec_scratch_reset();
  CHECK(swit__msgsec_seal(s, &in, &sealed, heap, NULL, err, sizeof err) == 0);
  CHECK(swit__msgsec_open(s, &sealed, &opened, heap, NULL, why,
                          sizeof why) == 0);
  in.payload = "hellO";
  sealed.payload = in.payload;
  CHECK(swit__msgsec_open(s, &sealed, &opened, heap, NULL, why, sizeof why));
  CHECK(strstr(why, "bad signature") != NULL);
  swit__msgsec_free(s);
  swit__config_free(cfg);
}

static void expect_refused(const char *yaml, const char *want)
{
  swit_config *cfg = load(yaml);
  swit__msgsec *s = NULL;
  char err[512] = "";

  CHECK(cfg && swit__msgsec_new(&s, cfg, err, sizeof err) == SWIT_E_CONFIG);
  if (!strstr(err, want)) fprintf(stderr, "  got: %s\n  want: %s\n", err, want);
  CHECK(strstr(err, want) != NULL);
  swit__msgsec_free(s);
  swit__config_free(cfg);
}

static void test_refusals(void)
{
  write_ring(K1 "active k1\n", 0600);
  expect_refused("messaging:\n  security:\n    message:\n      encryption:\n"
                 "        enabled: true\n        key_provider: vault\n"
                 "        keyring: secret/x\n",
                 "<string>:6:23: messaging.security.message.encryption."
                 "key_provider: unknown key provider \"vault\"");
  expect_refused("messaging:\n  security:\n    message:\n      encryption:\n"
                 "        algorithm: AES-128-CBC\n",
                 "<string>:5:20: messaging.security.message.encryption."
                 "algorithm: \"AES-128-CBC\" is not supported");
  expect_refused("messaging:\n  security:\n    message:\n      signing:\n"
                 "        enabled: true\n        key_provider: file\n"
                 "        keyring: missing\n",
                 "<string>:7:18: messaging.security.message.signing.keyring: "
                 "cannot read");
  expect_refused("messaging:\n  security:\n    message:\n      signing:\n"
                 "        enabled: true\n",
                 "messaging.security.message.signing.key_provider: must be "
                 "set when enabled");
  write_ring(K1 "active k9\n", 0600);
  expect_refused("messaging:\n  security:\n    message:\n      signing:\n"
                 "        {enabled: true, key_provider: file, keyring: ring}\n",
                 "active key 'k9' is not a 'key' of the ring");
  write_ring(K1 K1, 0600);
  expect_refused("messaging:\n  security:\n    message:\n      signing:\n"
                 "        {enabled: true, key_provider: file, keyring: ring}\n",
                 "line 2: key id 'k1' appears twice");
}

/* ------------------------------------------------------------------ */
/* On the memory broker, with the audit log */

static atomic_int handled, plain_ok, dead, dead_reason_ok;

/* The attacker: moves sealed publishes marked x-move to "orders-eu". */
static const swit_msg_view *mover(void *hs, const swit_msg_view *m, size_t n,
                                  const swit__pub_info *pi, int *rc,
                                  char *err, size_t errlen)
{
  static _Thread_local swit_msg_view moved;
  (void)hs, (void)rc, (void)err, (void)errlen;
  if (n != 1 || pi->dead_letter || !hfind(m, "x-move")) return m;
  moved = *m;
  moved.topic = "orders-eu";
  moved.topic_len = 9;
  return &moved;
}
static const swit__icpt_ops mover_ops = {.name = "mover",
                                         .publish_before = mover};

static int on_order(swit_msg_t *m, void *ud)
{
  size_t len;
  const char *p = swit_msg_payload(m, &len);
  const char *sec = swit_msg_header(m, "x-secret", &len);
  (void)ud;
  atomic_fetch_add(&handled, 1);
  if (p && !memcmp(p, "{\"card\"", 7) && sec && len == 2) atomic_fetch_add(&plain_ok, 1);
  return SWIT_ACK;
}

static int on_dead(swit_msg_t *m, void *ud)
{
  size_t len;
  const char *e = swit_msg_header(m, "x-swit-error", &len);
  const char *p = swit_msg_payload(m, &len);
  (void)ud;
  atomic_fetch_add(&dead, 1);
  /* the reason, and the original ciphertext kept */
  if (e && strstr(e, "message security: bad signature") && p && !memcmp(p, "SWE", 3))
    atomic_fetch_add(&dead_reason_ok, 1);
  return SWIT_ACK;
}

static void wait_for(atomic_int *v, int want)
{
  for (int i = 0; i < 5000 && atomic_load(v) < want; i++) usleep(1000);
}

static void test_host(void)
{
  char yaml[2048], err[512], audit_path[300], line[4096];
  const char *hdr[] = {"x-secret", "s3", NULL};
  const char *mv[] = {"x-move", "1", NULL};
  const char *pl = "{\"card\":{\"number\":\"4111\",\"exp\":\"12/30\"},"
                   "\"user\":{\"ssn\":\"123\"},\"n\":1}";
  swit_host_t *h = NULL;
  int redacted = 0, consumes = 0, publishes = 0, leaked = 0;
  FILE *f;

  write_ring(K1 "active k1\n", 0600);
  snprintf(audit_path, sizeof audit_path, "%s/audit.log", dir);
  snprintf(yaml, sizeof yaml,
           "server: {name: shop, admin: {listen: \"off\"}}\n"
           "messaging:\n"
           "  subscribers:\n    default: {max_attempts: 1}\n"
           "  resources:\n    subscribers: {worker_pool_size: 1}\n"
           "  security:\n"
           "    message:\n"
           "      encryption: {enabled: true, key_provider: file, keyring: "
           "ring, topics: [orders, orders-eu], headers: [x-secret]}\n"
           "      signing: {enabled: true, key_provider: file, keyring: ring,"
           " topics: [orders, orders-eu]}\n"
           "    audit: {enabled: true, output: audit.log, log_payload: true,"
           " sensitive_fields: [card.number, \"*ssn\"]}\n");
  CHECK(swit_host_new_from_string(&h, yaml, dir, err, sizeof err) == 0);
  if (!h) {
    fprintf(stderr, "  %s\n", err);
    return;
  }
  CHECK(swit__icpt_add(h, &mover_ops, NULL) >= 0);
  CHECK(swit_host_handle(h, "orders", NULL, SWIT_ORDER_NONE, on_order, NULL,
                         err, sizeof err) == 0);
  CHECK(swit_host_handle(h, "orders-eu", NULL, SWIT_ORDER_NONE, on_order,
                         NULL, err, sizeof err) == 0);
  CHECK(swit_host_handle(h, "orders-eu.dlq", NULL, SWIT_ORDER_NONE, on_dead,
                         NULL, err, sizeof err) == 0);
  CHECK(swit_host_start(h, err, sizeof err) == 0);
  for (int i = 0; i < 10; i++)
    CHECK(swit_host_publish(h, "orders", "k", 1, pl, strlen(pl), hdr, NULL,
                            err, sizeof err) == 0);
  CHECK(swit_host_publish(h, "orders", "k", 1, pl, strlen(pl), mv, NULL, err,
                          sizeof err) == 0);
  wait_for(&plain_ok, 10);
  wait_for(&dead, 1);
  CHECK(swit_host_stop(h, 5000) == 0);
  swit_host_free(h);                          /* drains the audit log */
  CHECK(atomic_load(&plain_ok) == 10);
  CHECK(atomic_load(&handled) == 10);         /* never the moved one */
  CHECK(atomic_load(&dead) == 1 && atomic_load(&dead_reason_ok) == 1);

  f = fopen(audit_path, "r");
  CHECK(f != NULL);
  while (f && fgets(line, sizeof line, f)) {
    if (strstr(line, "\"event\":\"consume\"") && strstr(line, "\"service\":\"shop\"") &&
        strstr(line, "\"topic\":\"orders\"") && strstr(line, "\"result\":\"ack\""))
      consumes++;
    if (strstr(line, "\"event\":\"publish\"")) publishes++;
    if (strstr(line, "\"number\":\"[REDACTED]\"") &&
        strstr(line, "\"ssn\":\"[REDACTED]\"") && strstr(line, "\"exp\":\"12/30\""))
      redacted++;
    if (strstr(line, "4111") || strstr(line, "\"123\"")) leaked++;
  }
  if (f) fclose(f);
  CHECK(consumes == 10);
  CHECK(redacted == 10);                      /* consumed, decrypted lines */
  CHECK(publishes >= 12);                     /* 11 + the dead letter */
  CHECK(leaked == 0);
}

static void test_redact(void)
{
  char *items[] = {"a.b", "list.x"};
  swit_cfg_list f = {items, 2};
  swit__buf b = {0};
  const char *in = "{\"a\":{\"b\":{\"deep\":[1,2]},\"c\":\"k\"},"
                   "\"list\":[{\"x\":1,\"y\":2},{\"x\":\"s\"}]}";

  CHECK(swit__redact_json(in, strlen(in), &f, &b) == 0);
  CHECK(b.data && strcmp(b.data, "{\"a\":{\"b\":\"[REDACTED]\",\"c\":\"k\"},"
                         "\"list\":[{\"x\":\"[REDACTED]\",\"y\":2},"
                         "{\"x\":\"[REDACTED]\"}]}") == 0);
  free(b.data);
  b = (swit__buf){0};
  CHECK(swit__redact_json("{\"a\":", 5, &f, &b) == -1);
  CHECK(swit__redact_json("not json", 8, &f, &b) == -1);
  free(b.data);
}

/* Base64 of signatures and keys: every byte value round-trips; a byte
 * outside the alphabet (NUL, 0x80-0xff, '-', '=' inside) or a length
 * not a multiple of 4 is refused; the output never passes its cap. */
static void test_base64(void)
{
  unsigned char raw[256], back[256];
  char text[400];
  size_t n;

  for (int i = 0; i < 256; i++) raw[i] = (unsigned char)i;
  for (size_t len = 0; len <= 5; len++) {
    n = swit__b64_encode(raw + 250, len, text);
    CHECK(n == (len + 2) / 3 * 4);
    CHECK(swit__b64_decode(text, n, back, sizeof back) == (long)len);
    CHECK(memcmp(back, raw + 250, len) == 0);
  }
  n = swit__b64_encode(raw, sizeof raw, text);
  CHECK(swit__b64_decode(text, n, back, sizeof back) == 256);
  CHECK(memcmp(back, raw, sizeof raw) == 0);
  CHECK(swit__b64_decode(text, n, back, 255) == -1);
  CHECK(swit__b64_decode(text, n - 1, back, sizeof back) == -1);
  for (int bad = 0; bad < 256; bad++) {
    char q[4] = {'Q', 'U', 'J', 'D'};
    if (memchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
               "0123456789+/=", bad, 65))
      continue;
    q[1] = (char)bad;
    CHECK(swit__b64_decode(q, 4, back, sizeof back) == -1);
  }
  CHECK(swit__b64_decode("QU=D", 4, back, sizeof back) == -1);
  CHECK(swit__b64_decode("QUJD", 4, back, sizeof back) == 3);
  CHECK(memcmp(back, "ABC", 3) == 0);
}

/* The x-swit-sig of a signed-only message is HMAC-SHA256 of
 * "swit-sig-v1" | lp(topic) | lp(key) | lp(id) | payload, as
 * docs/security.md says, whether the metadata is fed in one piece (short)
 * or part by part (a key of 1000 bytes); both open, and an encrypted
 * message with that key opens too and fails once its key changes. */
static void test_signature_format(void)
{
  static const char secret[] = "0123456789abcdef0123456789abcdef"; /* K1 */
  static char longkey[1000];
  swit_config *cfg;
  swit__msgsec *s = NULL;
  char err[512], why[256];

  memset(longkey, 'q', sizeof longkey);
  write_ring(K1 "active k1\n", 0600);
  cfg = load(enc_sign_yaml);
  CHECK(cfg && swit__msgsec_new(&s, cfg, err, sizeof err) == 0 && s);
  if (!s) return;
  for (int big = 0; big < 2; big++) {
    swit_msg_view in = view("audit", "payload", NULL, 0), out, back;
    const swit_header *id, *sig;
    unsigned char data[2048], mac[32], lp[4];
    char want[64];
    size_t n = 0;
    unsigned maclen = 0;

    if (big) in.key = longkey, in.key_len = sizeof longkey;
    swit__msgsec_scratch_reset();
    CHECK(swit__msgsec_seal(s, &in, &out, heap, NULL, err, sizeof err) == 0);
    id = hfind(&out, SWIT__HDR_ID);
    sig = hfind(&out, SWIT__HDR_SIG);
    CHECK(id && sig);
    if (!id || !sig) break;
    memcpy(data, "swit-sig-v1", 11);
    n = 11;
    const char *part[3] = {in.topic, in.key, id->value};
    size_t len[3] = {in.topic_len, in.key_len, id->value_len};
    for (int i = 0; i < 3; i++) {
      lp[0] = (unsigned char)(len[i] >> 24), lp[1] = (unsigned char)(len[i] >> 16);
      lp[2] = (unsigned char)(len[i] >> 8), lp[3] = (unsigned char)len[i];
      memcpy(data + n, lp, 4);
      memcpy(data + n + 4, part[i], len[i]);
      n += 4 + len[i];
    }
    memcpy(data + n, in.payload, in.payload_len);
    n += in.payload_len;
    HMAC(EVP_sha256(), secret, 32, data, n, mac, &maclen);
    memcpy(want, "k1:", 3);
    want[3 + swit__b64_encode(mac, maclen, want + 3)] = '\0';
    CHECK(sig->value_len == strlen(want) &&
          memcmp(sig->value, want, sig->value_len) == 0);
    CHECK(swit__msgsec_open(s, &out, &back, heap, NULL, why, sizeof why) == 0);
  }
  {
    swit_msg_view in = view("orders", "secret", NULL, 0), out, back;
    in.key = longkey, in.key_len = sizeof longkey;
    swit__msgsec_scratch_reset();
    CHECK(swit__msgsec_seal(s, &in, &out, heap, NULL, err, sizeof err) == 0);
    CHECK(swit__msgsec_open(s, &out, &back, heap, NULL, why, sizeof why) == 0);
    CHECK(back.payload_len == 6 && memcmp(back.payload, "secret", 6) == 0);
    out.key_len--;
    CHECK(swit__msgsec_open(s, &out, &back, heap, NULL, why, sizeof why) != 0);
  }
  swit__msgsec_free(s);
  swit__config_free(cfg);
}

int main(void)
{
  if (!mkdtemp(dir)) return 1;
  snprintf(ring_path, sizeof ring_path, "%s/ring", dir);
  test_base64();
  test_signature_format();
  test_seal_open();
  test_encryption_rotation();
  test_ed25519();
  test_refusals();
  test_redact();
  test_host();
  unlink(ring_path);
  snprintf(ring_path, sizeof ring_path, "%s/audit.log", dir);
  unlink(ring_path);
  rmdir(dir);
  return check_done("test_sec");
}
