/*
 * fuzz_config.c - libFuzzer harness of the YAML config loader
 * (host/config: libyaml, the walk over the field tables, ${VAR}
 * expansion, validation). Each input is loaded as a config string; it
 * must either load or fail with a "<string>:" message, and never crash,
 * leak or take unbounded time (libFuzzer's -timeout catches the last).
 * Built with -DSWIT_FUZZ=ON (spec/fuzz/CMakeLists.txt).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char *text = malloc(size + 1), err[512];
  swit_config *cfg = NULL;
  int rc;

  if (!text) return 0;
  memcpy(text, data, size);
  text[size] = '\0'; /* a NUL inside ends the string, as for any caller */
  err[0] = '\0';
  rc = swit__config_load_string(&cfg, text, "/nonexistent", err, sizeof err);
  if (rc == 0 ? cfg == NULL : cfg != NULL || strncmp(err, "<string>", 8) != 0)
    abort();
  swit__config_free(cfg);
  free(text);
  return 0;
}
