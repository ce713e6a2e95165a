/*
 * sec_bench.c - the cost of message security per message on one thread:
 * seal (encrypt + sign) as publish_before does it and open (verify +
 * decrypt) as msgs_before does it, for a 1 KB payload, next to a plain
 * copy of the view (the floor). Not a test: it prints figures.
 *
 *   bench_sec [--messages N] [--repeat R] [--payload BYTES] [--case 0..4]
 *
 * Cases: aes (encryption only), hmac (signing only), aes+hmac, and
 * aes+ed25519 (non-repudiation; far slower, shown for the choice).
 * Each case runs R times interleaved; the best run is reported.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "sec/msgsec.h"
#include "swit/swit.h"

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A bump allocator over one buffer, reset per message. */
static char arena[1 << 16];
static size_t used;
static void *bump(void *ud, size_t n)
{
  (void)ud;
  n = (n + 15) & ~(size_t)15;
  if (used + n > sizeof arena) return NULL;
  used += n;
  return arena + used - n;
}

static swit_config *cfgs[8];
static int ncfgs;

static swit__msgsec *make(const char *dir, int enc, const char *sig)
{
  char yaml[512], err[512];
  swit_config *cfg;
  swit__msgsec *s = NULL;

  snprintf(yaml, sizeof yaml,
           "messaging:\n  security:\n    message:\n"
           "      encryption: {enabled: %s, key_provider: file, keyring: ring}\n"
           "      signing: {enabled: %s, algorithm: %s, key_provider: file,"
           " keyring: ring}\n",
           enc ? "true" : "false", sig ? "true" : "false", sig ? sig : "HMAC-SHA256");
  if (swit__config_load_string(&cfg, yaml, dir, err, sizeof err) != 0 ||
      swit__msgsec_new(&s, cfg, err, sizeof err) != 0) {
    fprintf(stderr, "bench_sec: %s\n", err);
    exit(1);
  }
  cfgs[ncfgs++] = cfg;   /* s reads it: freed after s */
  return s;
}

int main(int argc, char **argv)
{
  long n = 200000, repeat = 5, size = 1024, only = -1;
  char dir[] = "/tmp/swit_bench_sec_XXXXXX", ring[300];
  const char *names[] = {"plain copy", "aes-256-gcm", "hmac-sha256",
                         "aes+hmac", "aes+ed25519"};
  swit__msgsec *cases[5] = {NULL};
  double best_seal[5], best_open[5];
  char *payload;
  FILE *f;

  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--messages")) n = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--repeat")) repeat = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--payload")) size = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--case")) only = atol(argv[i + 1]);
  }
  if (n < 1 || repeat < 1 || size < 1 || size > 16384 || only < -1 ||
      only > 4 || !mkdtemp(dir)) {
    fprintf(stderr, "usage: bench_sec [--messages N] [--repeat R] "
            "[--payload BYTES<=16384] [--case 0..4]\n");
    return 2;
  }
  snprintf(ring, sizeof ring, "%s/ring", dir);
  f = fopen(ring, "w");
  fputs("key k1 MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\nactive k1\n", f);
  fclose(f);
  chmod(ring, 0600);
  cases[1] = make(dir, 1, NULL);
  cases[2] = make(dir, 0, "HMAC-SHA256");
  cases[3] = make(dir, 1, "HMAC-SHA256");
  cases[4] = make(dir, 1, "Ed25519");
  payload = malloc((size_t)size);
  memset(payload, 'x', (size_t)size);
  for (int c = 0; c < 5; c++) best_seal[c] = best_open[c] = 1e9;
  for (long r = 0; r < repeat; r++) {
    for (int c = 0; c < 5; c++) {
      if (only >= 0 && c != only) continue;
      swit_header h = {"content-type", "application/json", 12, 16};
      swit_msg_view in = {0}, sealed, opened;
      char why[256], err[256];
      long m = c == 4 ? n / 20 : n;        /* Ed25519 is slow */
      double t0, seal = 0, open = 0;

      in.topic = "orders", in.topic_len = 6;
      in.key = "user-42", in.key_len = 7;
      in.payload = payload, in.payload_len = (size_t)size;
      in.headers = &h, in.nheaders = 1;
      for (long i = 0; i < m; i++) {
        used = 0;
        t0 = now_s();
        if (c == 0) {
          sealed = in;
          char *p = bump(NULL, in.payload_len);
          memcpy(p, in.payload, in.payload_len);
          sealed.payload = p;
        } else if (swit__msgsec_seal(cases[c], &in, &sealed, bump, NULL, err,
                                     sizeof err) != 0) {
          fprintf(stderr, "seal: %s\n", err);
          return 1;
        }
        seal += now_s() - t0;
        t0 = now_s();
        if (c == 0) {
          opened = sealed;
        } else if (swit__msgsec_open(cases[c], &sealed, &opened, bump, NULL,
                                     why, sizeof why) != 0) {
          fprintf(stderr, "open: %s\n", why);
          return 1;
        }
        open += now_s() - t0;
        if (opened.payload_len != in.payload_len) return 1;
      }
      if (seal / (double)m < best_seal[c]) best_seal[c] = seal / (double)m;
      if (open / (double)m < best_open[c]) best_open[c] = open / (double)m;
    }
  }
  printf("bench_sec: %ld-byte payload, %ld messages x %ld runs (best run), "
         "one thread\n", size, n, repeat);
  printf("%-14s %12s %12s %12s\n", "case", "seal us/msg", "open us/msg",
         "total us");
  for (int c = 0; c < 5; c++)
    if (only < 0 || c == only) printf("%-14s %12.3f %12.3f %12.3f\n", names[c], best_seal[c] * 1e6,
           best_open[c] * 1e6, (best_seal[c] + best_open[c]) * 1e6);
  for (int c = 1; c < 5; c++) swit__msgsec_free(cases[c]);
  for (int c = 0; c < ncfgs; c++) swit__config_free(cfgs[c]);
  free(payload);
  unlink(ring);
  rmdir(dir);
  return 0;
}
