/*
 * lua_json.c - the JSON decoder behind msg:json(), a classic lua_CFunction.
 *
 * A single-pass recursive-descent parser that builds Lua values directly
 * on the Lua stack: no token list, no intermediate tree, and strings
 * without escapes are pushed straight from the input. It keeps lua-cjson's
 * default mapping (objects -> tables with string keys, arrays -> sequences,
 * null -> lightuserdata NULL, numbers -> doubles equal to strtod's) so
 * handlers written for cjson keep working, but accepts strict JSON only
 * (cjson by default also takes hex, NaN, Infinity, leading zeros and raw
 * control characters in strings). Bad input is reported as `nil, message`
 * with a 1-based byte offset; only running out of memory raises, through
 * Lua itself.
 *
 * Runs on any worker thread, on the lua_State that calls it. It is
 * reentrant and keeps no globals: all state lives in the parser struct on
 * the C stack and in the Lua stack. The parser relies on the NUL byte Lua
 * puts after every string: that byte is invalid everywhere in JSON, so it
 * ends every scan without separate length checks.
 */
#include <float.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua_json.h"

#include <lauxlib.h>

enum { JSON_MAX_DEPTH = 1000 };

typedef struct json_parser {
  lua_State *L;
  const char *start;    /* first byte of the input */
  const char *end;      /* the NUL after the last byte */
  const char *err_at;   /* where the error was found */
  const char *err;      /* what was expected there (static text) */
  int depth;            /* containers currently open */
  int waiting;          /* stack slots held by elements not yet stored */
} json_parser;

/* Every parse_* function takes the position of a value's first byte,
 * pushes the value and returns the position after it, or NULL once
 * fail() has recorded an error. */
static const char *parse_value(json_parser *jp, const char *p);

/* ------------------------------------------------------------------ */
/* Character classes and errors */

static int is_digit(unsigned char c)
{
  return c >= '0' && c <= '9';
}

static const char *skip_ws(const char *p)
{
  while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
  return p;
}

/* Records the error; at the end of input the message says so. */
static const char *fail(json_parser *jp, const char *at, const char *what)
{
  jp->err_at = at;
  jp->err = at == jp->end ? "unexpected end of input" : what;
  return NULL;
}

/* ------------------------------------------------------------------ */
/* Strings */

/* String bytes that end a plain run: the quote, a backslash, controls. */
static int is_plain(unsigned char c)
{
  return c >= 0x20 && c != '"' && c != '\\';
}

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* Nonzero if one of the 8 bytes in w is below n (n <= 0x80). */
static uint64_t swar_less(uint64_t w, unsigned n)
{
  return (w - ONES * n) & ~w & HIGHS;
}

/* Returns the first byte at or after p that ends a plain run. Words of
 * eight bytes are tested at once while they lie within the input; in a
 * word with a hit, the lowest flagged byte is the first real one. */
static const char *scan_plain(const char *p, const char *end)
{
  while (end - p >= 8) {
    uint64_t w, hit;
    memcpy(&w, p, 8);
    hit = swar_less(w, 0x20) | swar_less(w ^ (ONES * '"'), 1) |
          swar_less(w ^ (ONES * '\\'), 1);
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (hit) return p + (__builtin_ctzll(hit) >> 3);
#else
    if (hit) break;
#endif
    p += 8;
  }
  while (is_plain((unsigned char)*p)) p++;
  return p;
}

/* Reads the four hex digits at s into out; returns NULL, or the first
 * byte that is not a hex digit. */
static const char *hex4(const char *s, unsigned *out)
{
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    unsigned c = (unsigned char)s[i], d;
    if (c - '0' < 10) d = c - '0';
    else if ((c | 0x20) - 'a' < 6) d = (c | 0x20) - 'a' + 10;
    else return s + i;
    v = v << 4 | d;
  }
  *out = v;
  return NULL;
}

/* Writes the code point cp as UTF-8 into out; returns its length. */
static int utf8_encode(unsigned cp, char *out)
{
  static const unsigned char lead[] = {0, 0, 0xc0, 0xe0, 0xf0};
  int n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
  for (int i = n - 1; i > 0; i--, cp >>= 6)
    out[i] = (char)(0x80 | (cp & 0x3f));
  out[0] = (char)(lead[n] | cp);
  return n;
}

/* Appends the \uXXXX escape at p (and the low surrogate that must follow
 * a high one) to b as UTF-8. Errors point at the first offending byte. */
static const char *add_unicode(json_parser *jp, luaL_Buffer *b, const char *p)
{
  unsigned cp, lo = 0;
  const char *bad = hex4(p + 2, &cp), *q = p + 6;
  char utf8[4];
  if (bad) return fail(jp, bad, "invalid \\u escape");
  if (cp >= 0xdc00 && cp <= 0xdfff)
    return fail(jp, p, "lone low surrogate in \\u escape");
  if (cp >= 0xd800 && cp <= 0xdbff) {
    bad = q[0] != '\\' ? q : q[1] != 'u' ? q + 1 : hex4(q + 2, &lo);
    if (bad || lo < 0xdc00 || lo > 0xdfff)
      return fail(jp, bad ? bad : q, "high surrogate not followed by a low one");
    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    q += 6;
  }
  luaL_addlstring(b, utf8, (size_t)utf8_encode(cp, utf8));
  return q;
}

/* Appends the escape at p (a backslash) to b. */
static const char *add_escape(json_parser *jp, luaL_Buffer *b, const char *p)
{
  static const char names[] = "\"\\/bfnrt", chars[] = "\"\\/\b\f\n\r\t";
  const char *hit = p[1] ? strchr(names, p[1]) : NULL;
  if (p[1] == 'u') return add_unicode(jp, b, p);
  if (!hit) return fail(jp, p + 1, "invalid escape in string");
  luaL_addchar(b, chars[hit - names]);
  return p + 2;
}

/* The slow path of parse_string: run is where the text began, p the
 * first byte that ended a plain run. Kept out of line so the luaL_Buffer
 * (several KB) never sits in a recursive frame. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static const char *parse_escaped(json_parser *jp, const char *run,
                                 const char *p)
{
  luaL_Buffer b;
  if (!lua_checkstack(jp->L, LUA_MINSTACK))  /* luaL_Buffer's own levels */
    return fail(jp, p, "too deeply nested for the Lua stack");
  luaL_buffinit(jp->L, &b);
  for (;;) {
    luaL_addlstring(&b, run, (size_t)(p - run));
    if (*p == '"') break;
    if (*p != '\\') return fail(jp, p, "control character in string");
    if (!(run = p = add_escape(jp, &b, p))) return NULL;
    p = scan_plain(p, jp->end);
  }
  luaL_pushresult(&b);
  return p + 1;
}

/* p is at the opening quote. */
static const char *parse_string(json_parser *jp, const char *p)
{
  const char *s = p + 1, *q = scan_plain(s, jp->end);
  if (*q != '"') return parse_escaped(jp, s, q);
  lua_pushlstring(jp->L, s, (size_t)(q - s));
  return q + 1;
}

/* ------------------------------------------------------------------ */
/* Numbers */

/* Integers up to 2^53 and the powers of ten up to 1e22 are exact doubles,
 * so one multiplication or division of the two rounds exactly as strtod
 * does, provided doubles are evaluated as doubles (FAST_FP). Everything
 * else goes to strtod. */
static const double pow10_exact[] = {
  1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
  1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

enum {
  MAX_FAST_DIGITS = 19,  /* any 19 digits fit a uint64_t */
  MAX_FAST_POW10 = 22,
  FAST_FP = FLT_EVAL_METHOD == 0
};

typedef struct json_number {
  uint64_t mant;   /* the digits, if there are at most MAX_FAST_DIGITS */
  int digits;      /* digits read, integer and fraction part */
  int frac;        /* of which after the point */
  int exp;         /* the explicit exponent, saturated */
  int is_int;      /* neither point nor exponent */
} json_number;

static const char *scan_digits(const char *p, json_number *n)
{
  for (; is_digit((unsigned char)*p); p++, n->digits++)
    if (n->digits < MAX_FAST_DIGITS)
      n->mant = n->mant * 10 + (uint64_t)(*p - '0');
  return p;
}

static const char *scan_exponent(json_parser *jp, const char *p,
                                 json_number *n)
{
  int neg = 0;
  if (*p == '+' || *p == '-') neg = *p++ == '-';
  if (!is_digit((unsigned char)*p))
    return fail(jp, p, "expected a digit in the exponent");
  for (; is_digit((unsigned char)*p); p++)
    if (n->exp < 100000) n->exp = n->exp * 10 + (*p - '0');
  if (neg) n->exp = -n->exp;
  return p;
}

/* Checks the JSON number grammar at p (after any '-') and splits the
 * number up into n. */
static const char *scan_number(json_parser *jp, const char *p,
                               json_number *n)
{
  const char *q;
  if (*p == '0') {
    if (is_digit((unsigned char)*++p))
      return fail(jp, p - 1, "leading zero in number");
  } else if ((q = scan_digits(p, n)) == p) {
    return fail(jp, p, "expected a digit");
  } else {
    p = q;
  }
  if (*p == '.') {
    q = scan_digits(++p, n);
    if (q == p) return fail(jp, p, "expected a digit after '.'");
    n->frac = (int)(q - p);
    n->is_int = 0;
    p = q;
  }
  if ((*p | 0x20) == 'e') {
    n->is_int = 0;
    return scan_exponent(jp, p + 1, n);
  }
  return p;
}

/* Clinger's fast path: when the digits and the power of ten are both
 * exact doubles, stores mant * 10^e in v and returns 1. */
static int fast_decimal(const json_number *n, double *v)
{
  int e;
  if (!FAST_FP || n->digits > MAX_FAST_DIGITS ||
      n->mant > (UINT64_C(1) << 53))
    return 0;
  e = n->exp - n->frac;
  if (e < -MAX_FAST_POW10 || e > MAX_FAST_POW10) return 0;
  *v = e >= 0 ? (double)n->mant * pow10_exact[e]
              : (double)n->mant / pow10_exact[-e];
  return 1;
}

static const char *parse_number(json_parser *jp, const char *p)
{
  int neg = *p == '-';
  const char *s = p + neg;
  json_number n = {.is_int = 1};
  double v;
  char *stop;
  if (!(p = scan_number(jp, s, &n))) return NULL;
  if (n.is_int && n.digits <= MAX_FAST_DIGITS) {
    v = (double)n.mant;  /* correctly rounded, as strtod */
  } else if (!fast_decimal(&n, &v)) {
    v = strtod(s, &stop);
    if (stop != p)  /* only when LC_NUMERIC is not "C" */
      return fail(jp, s, "number not readable in the current locale");
  }
  lua_pushnumber(jp->L, neg ? -v : v);
  return p;
}

/* ------------------------------------------------------------------ */
/* Containers
 *
 * The elements of an open container wait on the Lua stack until it
 * closes; then its table is created at its exact size (growing a table
 * by rehashing costs more than the parsing) and slid under them. A
 * container with more than JSON_BATCH elements is stored batch by batch,
 * and so is every container once the waiting elements of all open ones
 * hold JSON_STACK_BUDGET slots: with at most 2 more slots per open level
 * (table and key) the stack stays below LUAI_MAXCSTACK at any depth.
 */

enum { JSON_BATCH = 32, JSON_STACK_BUDGET = 4000 };

typedef struct json_open {
  int slot;          /* stack index of the table, or where it will go */
  int count;         /* elements parsed */
  int stored;        /* elements already in the table */
  int has_table;
  int maybe_dup;     /* a waiting key repeats */
  uint64_t keys[2];  /* a filter of the waiting keys */
} json_open;

/* p is at the opening bracket; reserves the stack for one batch. */
static const char *enter(json_parser *jp, json_open *c, const char *p)
{
  if (++jp->depth > JSON_MAX_DEPTH)
    return fail(jp, p, "nesting deeper than 1000 levels");
  if (!lua_checkstack(jp->L, 2 * JSON_BATCH + 4))
    return fail(jp, p, "too deeply nested for the Lua stack");
  *c = (json_open){.slot = lua_gettop(jp->L) + 1};
  return skip_ws(p + 1);
}

static void open_table(json_parser *jp, json_open *c, int narr, int nrec)
{
  if (!c->has_table) {
    lua_createtable(jp->L, narr, nrec);
    lua_insert(jp->L, c->slot);
    c->has_table = 1;
  }
}

/* Counts the element just parsed; says whether to store now. */
static int element_done(json_parser *jp, json_open *c, int object)
{
  c->count++;
  jp->waiting += object ? 2 : 1;
  return c->count - c->stored == JSON_BATCH ||
         jp->waiting > JSON_STACK_BUDGET;
}

static void store_array(json_parser *jp, json_open *c)
{
  open_table(jp, c, c->count, 0);
  jp->waiting -= c->count - c->stored;
  for (int i = c->count; i > c->stored; i--)
    lua_rawseti(jp->L, c->slot, i);
  c->stored = c->count;
}

/* rawset pops the waiting pairs last first. That is right unless a key
 * repeats: then they are set in input order, so the last one wins. */
static void store_object(json_parser *jp, json_open *c)
{
  lua_State *L = jp->L;
  int n = c->count - c->stored;
  open_table(jp, c, 0, n);
  if (c->maybe_dup) {
    for (int k = c->slot + 1; k < c->slot + 2 * n; k += 2) {
      lua_pushvalue(L, k);
      lua_pushvalue(L, k + 1);
      lua_rawset(L, c->slot);
    }
    lua_settop(L, c->slot);
  } else {
    for (int i = 0; i < n; i++) lua_rawset(L, c->slot);
  }
  jp->waiting -= 2 * n;
  c->stored = c->count;
  c->maybe_dup = 0;
  c->keys[0] = c->keys[1] = 0;
}

/* Says whether the key s[0..n) repeats a waiting key of c. A 128-bit
 * filter rules out almost every key; the rest are compared. */
static int repeats_key(json_parser *jp, json_open *c, const char *s,
                       size_t n)
{
  uint64_t sig = n ? (uint64_t)n << 24 ^ (uint64_t)(unsigned char)s[0] ^
                     (uint64_t)(unsigned char)s[n / 2] << 8 ^
                     (uint64_t)(unsigned char)s[n - 1] << 16
                   : 0;
  unsigned h = (unsigned)(sig * UINT64_C(0x9e3779b97f4a7c15) >> 57);
  uint64_t bit = UINT64_C(1) << (h & 63), seen = c->keys[h >> 6] & bit;
  c->keys[h >> 6] |= bit;
  if (!seen) return 0;
  for (int i = c->stored, k = c->slot + c->has_table; i < c->count;
       i++, k += 2) {
    size_t len;
    const char *key = lua_tolstring(jp->L, k, &len);
    if (len == n && memcmp(key, s, n) == 0) return 1;
  }
  return 0;
}

/* Pushes one key and its value; p is at the key's opening quote. */
static const char *parse_member(json_parser *jp, json_open *c, const char *p)
{
  const char *s = p + 1, *q;
  size_t n;
  if (*p != '"') return fail(jp, p, "expected a string key");
  q = scan_plain(s, jp->end);
  if (*q == '"') {
    n = (size_t)(q - s);
    lua_pushlstring(jp->L, s, n);
    p = q + 1;
  } else {
    if (!(p = parse_escaped(jp, s, q))) return NULL;
    s = lua_tolstring(jp->L, -1, &n);
  }
  if (repeats_key(jp, c, s, n)) c->maybe_dup = 1;
  p = skip_ws(p);
  if (*p != ':') return fail(jp, p, "expected ':'");
  return parse_value(jp, skip_ws(p + 1));
}

/* p is at the opening bracket of an array or (if object) an object. */
static const char *parse_container(json_parser *jp, const char *p,
                                   int object)
{
  char close = object ? '}' : ']';
  json_open c;
  if (!(p = enter(jp, &c, p))) return NULL;
  if (*p != close) {
    for (;;) {
      p = object ? parse_member(jp, &c, p) : parse_value(jp, p);
      if (!p) return NULL;
      if (element_done(jp, &c, object))
        object ? store_object(jp, &c) : store_array(jp, &c);
      p = skip_ws(p);
      if (*p != ',') break;
      p = skip_ws(p + 1);
    }
    if (*p != close)
      return fail(jp, p, object ? "expected ',' or '}'" : "expected ',' or ']'");
  }
  object ? store_object(jp, &c) : store_array(jp, &c);
  jp->depth--;
  return p + 1;
}

/* ------------------------------------------------------------------ */
/* Values */

static const char *parse_literal(json_parser *jp, const char *p,
                                 const char *word, size_t len)
{
  for (size_t i = 1; i < len; i++)
    if (p[i] != word[i]) return fail(jp, p + i, "invalid literal");
  return p + len;
}

static const char *parse_value(json_parser *jp, const char *p)
{
  switch (*p) {
  case '{': return parse_container(jp, p, 1);
  case '[': return parse_container(jp, p, 0);
  case '"': return parse_string(jp, p);
  case 't':
    lua_pushboolean(jp->L, 1);
    return parse_literal(jp, p, "true", 4);
  case 'f':
    lua_pushboolean(jp->L, 0);
    return parse_literal(jp, p, "false", 5);
  case 'n':
    lua_pushlightuserdata(jp->L, NULL);
    return parse_literal(jp, p, "null", 4);
  case '-': case '0': case '1': case '2': case '3': case '4':
  case '5': case '6': case '7': case '8': case '9':
    return parse_number(jp, p);
  default:
    return fail(jp, p, "expected a value");
  }
}

/* ------------------------------------------------------------------ */
/* Entry points */

int swit__lua_json_decode(lua_State *L)
{
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  json_parser jp = {.L = L, .start = s, .end = s + len};
  int base = lua_gettop(L);
  const char *p = parse_value(&jp, skip_ws(s));
  char msg[128];
  if (p) {
    p = skip_ws(p);
    if (p == jp.end) return 1;
    fail(&jp, p, "unexpected data after the value");
  }
  snprintf(msg, sizeof msg, "invalid JSON at byte %zu: %s",
           (size_t)(jp.err_at - jp.start) + 1, jp.err);
  lua_settop(L, base);
  lua_pushnil(L);
  lua_pushstring(L, msg);
  return 2;
}

int swit__luaopen_json(lua_State *L)
{
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, swit__lua_json_decode);
  lua_setfield(L, -2, "decode");
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  return 1;
}
