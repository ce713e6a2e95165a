/*
 * lua_json.c - the JSON decoder behind msg:json(), a classic lua_CFunction.
 *
 * A single-pass recursive-descent parser that builds Lua values directly
 * on the Lua stack: no token list, no intermediate tree, and strings
 * without escapes are pushed straight from the input. It keeps lua-cjson's
 * default mapping (objects -> tables with string keys, arrays -> sequences,
 * null -> lightuserdata NULL, numbers -> doubles equal to strtod's) so
 * handlers written for cjson keep working. Bad input is reported as
 * `nil, message`; only running out of memory raises, through Lua itself.
 *
 * Runs on any worker thread, on the lua_State that calls it. It is
 * reentrant and keeps no globals: all state lives in the parser struct on
 * the C stack and in the Lua stack. The parser relies on the NUL byte Lua
 * puts after every string: that byte is invalid everywhere in JSON, so it
 * ends every scan without separate length checks.
 */
#include <float.h>
#include <stdint.h>
#include <stdlib.h>

#include "lua_json.h"

#include <lauxlib.h>

enum { JSON_MAX_DEPTH = 1000 };

typedef struct json_parser {
  lua_State *L;
  const char *start;    /* first byte of the input */
  const char *end;      /* the NUL after the last byte */
  const char *p;        /* next byte to read */
  const char *err_at;   /* where the error was found */
  const char *err;      /* what was expected there (static text) */
  int depth;            /* containers currently open */
  int waiting;          /* stack slots held by elements not yet stored */
} json_parser;

static int parse_value(json_parser *jp);

/* ------------------------------------------------------------------ */
/* Character classes and errors */

static int is_ws(unsigned char c)
{
  return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static int is_digit(unsigned char c)
{
  return c >= '0' && c <= '9';
}

static void skip_ws(json_parser *jp)
{
  while (is_ws((unsigned char)*jp->p)) jp->p++;
}

/* Records the first error; at the end of input the message says so. */
static int fail(json_parser *jp, const char *at, const char *expected)
{
  jp->err_at = at;
  jp->err = at == jp->end ? "unexpected end of input" : expected;
  return -1;
}

/* ------------------------------------------------------------------ */
/* Strings */

/* String bytes that end a plain run: the quote, a backslash, controls. */
static int is_plain(unsigned char c)
{
  return c >= 0x20 && c != '"' && c != '\\';
}

static int hex4(const char *s, unsigned *out)
{
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    unsigned char c = (unsigned char)s[i];
    unsigned d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') d = (c | 0x20) - 'a' + 10;
    else return -1;
    v = v << 4 | d;
  }
  *out = v;
  return 0;
}

/* Decodes \uXXXX (and its low-surrogate partner) at p, which points at
 * the 'u'; writes UTF-8 into out and returns its length, or -1. */
static int unicode_escape(json_parser *jp, const char **pp, char *out)
{
  const char *p = *pp;
  unsigned cp, lo;
  if (hex4(p + 1, &cp) < 0) return fail(jp, p - 1, "invalid \\u escape");
  p += 5;
  if (cp >= 0xdc00 && cp <= 0xdfff)
    return fail(jp, p - 6, "lone low surrogate in \\u escape");
  if (cp >= 0xd800 && cp <= 0xdbff) {
    if (p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) < 0 ||
        lo < 0xdc00 || lo > 0xdfff)
      return fail(jp, p - 6, "high surrogate not followed by a low one");
    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    p += 6;
  }
  *pp = p;
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xc0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xe0 | cp >> 12);
    out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  out[0] = (char)(0xf0 | cp >> 18);
  out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
  out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
  out[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

/* Appends the escape at p (pointing at the backslash) to b. */
static int add_escape(json_parser *jp, luaL_Buffer *b)
{
  const char *p = jp->p;
  char utf8[4];
  int n;
  switch (p[1]) {
  case '"': luaL_addchar(b, '"'); break;
  case '\\': luaL_addchar(b, '\\'); break;
  case '/': luaL_addchar(b, '/'); break;
  case 'b': luaL_addchar(b, '\b'); break;
  case 'f': luaL_addchar(b, '\f'); break;
  case 'n': luaL_addchar(b, '\n'); break;
  case 'r': luaL_addchar(b, '\r'); break;
  case 't': luaL_addchar(b, '\t'); break;
  case 'u':
    p++;
    if ((n = unicode_escape(jp, &p, utf8)) < 0) return -1;
    luaL_addlstring(b, utf8, (size_t)n);
    jp->p = p;
    return 0;
  default:
    return fail(jp, p, "invalid escape in string");
  }
  jp->p = p + 2;
  return 0;
}

/* The slow path for strings with escapes: jp->p is at the first
 * backslash, run is where the string's text began. Kept out of line so
 * the luaL_Buffer (several KB) never sits in a recursive frame. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static int parse_escaped(json_parser *jp, const char *run)
{
  luaL_Buffer b;
  if (!lua_checkstack(jp->L, LUA_MINSTACK))  /* luaL_Buffer's own levels */
    return fail(jp, jp->p, "too deeply nested for the Lua stack");
  luaL_buffinit(jp->L, &b);
  for (;;) {
    luaL_addlstring(&b, run, (size_t)(jp->p - run));
    if (*jp->p == '"') break;
    if (*jp->p != '\\')
      return fail(jp, jp->p, "control character in string");
    if (add_escape(jp, &b) < 0) return -1;
    run = jp->p;
    while (is_plain((unsigned char)*jp->p)) jp->p++;
  }
  jp->p++;
  luaL_pushresult(&b);
  return 0;
}

/* Pushes the string whose opening quote is at jp->p. */
static int parse_string(json_parser *jp)
{
  const char *s = ++jp->p;
  while (is_plain((unsigned char)*jp->p)) jp->p++;
  if (*jp->p == '"') {
    lua_pushlstring(jp->L, s, (size_t)(jp->p - s));
    jp->p++;
    return 0;
  }
  if (*jp->p == '\\') return parse_escaped(jp, s);
  return fail(jp, jp->p, "control character in string");
}

/* ------------------------------------------------------------------ */
/* Numbers */

/* Integers up to 2^53 and the powers of ten up to 1e22 are exact doubles,
 * so one multiplication or division of the two rounds exactly as strtod
 * does (Clinger's fast path) - provided doubles are evaluated as doubles. */
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
  uint64_t mant;   /* the first MAX_FAST_DIGITS significant-or-not digits */
  int digits;      /* digits read, integer and fraction */
  int frac;        /* of which after the point */
  int exp;         /* explicit exponent, saturated */
  int has_point_or_exp;
} json_number;

/* Reads a run of digits into n; returns how many there were. */
static int scan_digits(json_parser *jp, json_number *n)
{
  const char *s = jp->p;
  while (is_digit((unsigned char)*jp->p)) {
    if (n->digits < MAX_FAST_DIGITS)
      n->mant = n->mant * 10 + (uint64_t)(*jp->p - '0');
    n->digits++;
    jp->p++;
  }
  return (int)(jp->p - s);
}

static int scan_exponent(json_parser *jp, json_number *n)
{
  int neg = 0;
  jp->p++;
  if (*jp->p == '+' || *jp->p == '-') neg = *jp->p++ == '-';
  if (!is_digit((unsigned char)*jp->p))
    return fail(jp, jp->p, "expected a digit in exponent");
  while (is_digit((unsigned char)*jp->p)) {
    if (n->exp < 100000) n->exp = n->exp * 10 + (*jp->p - '0');
    jp->p++;
  }
  if (neg) n->exp = -n->exp;
  return 0;
}

/* Checks the JSON number grammar at jp->p and splits the number up. */
static int scan_number(json_parser *jp, json_number *n)
{
  if (*jp->p == '-') jp->p++;
  if (*jp->p == '0') {
    jp->p++;
    if (is_digit((unsigned char)*jp->p))
      return fail(jp, jp->p - 1, "leading zero in number");
  } else if (!scan_digits(jp, n)) {
    return fail(jp, jp->p, "expected a digit");
  }
  if (*jp->p == '.') {
    jp->p++;
    n->has_point_or_exp = 1;
    if (!(n->frac = scan_digits(jp, n)))
      return fail(jp, jp->p, "expected a digit after '.'");
  }
  if ((*jp->p | 0x20) == 'e') {
    n->has_point_or_exp = 1;
    return scan_exponent(jp, n);
  }
  return 0;
}

/* Pushes the number at jp->p. */
static int parse_number(json_parser *jp)
{
  const char *s = jp->p;
  json_number n = {0, 0, 0, 0, 0};
  double v;
  char *stop;
  if (scan_number(jp, &n) < 0) return -1;
  int e = n.exp - n.frac;
  if (n.digits <= MAX_FAST_DIGITS && !n.has_point_or_exp) {
    v = (double)n.mant;  /* a correctly rounded conversion, as strtod */
  } else if (FAST_FP && n.digits <= MAX_FAST_DIGITS &&
             n.mant <= (UINT64_C(1) << 53) &&
             e >= -MAX_FAST_POW10 && e <= MAX_FAST_POW10) {
    v = e >= 0 ? (double)n.mant * pow10_exact[e]
               : (double)n.mant / pow10_exact[-e];
  } else {
    v = strtod(*s == '-' ? s + 1 : s, &stop);
    if (stop != jp->p)  /* only when LC_NUMERIC is not "C" */
      return fail(jp, s, "number not readable in the current locale");
  }
  lua_pushnumber(jp->L, *s == '-' ? -v : v);
  return 0;
}

/* ------------------------------------------------------------------ */
/* Containers
 *
 * The elements of an open container wait on the Lua stack until it
 * closes, so its table is created at its exact size: growing a table by
 * rehashing costs more than parsing it. A container with more than
 * JSON_BATCH elements is moved into its table batch by batch, and so is
 * every container once the waiting elements of all open containers use
 * JSON_STACK_BUDGET slots: with 2 slots per open level on top (table and
 * key) the stack stays below LUAI_MAXCSTACK at any depth. */

enum {
  JSON_BATCH = 32,
  JSON_STACK_BUDGET = 4000
};

typedef struct json_open {
  int slot;     /* stack index of the table; nil until it is created */
  int count;    /* elements parsed */
  int stored;   /* elements already moved into the table */
} json_open;

/* Opens the container at jp->p: reserves the stack for one batch. */
static int enter(json_parser *jp, json_open *c)
{
  if (++jp->depth > JSON_MAX_DEPTH)
    return fail(jp, jp->p, "nesting deeper than 1000 levels");
  if (!lua_checkstack(jp->L, 2 * JSON_BATCH + 4))
    return fail(jp, jp->p, "too deeply nested for the Lua stack");
  lua_pushnil(jp->L);
  c->slot = lua_gettop(jp->L);
  c->count = c->stored = 0;
  jp->p++;
  skip_ws(jp);
  return 0;
}

static void create_table(json_parser *jp, json_open *c, int narr, int nrec)
{
  if (lua_isnil(jp->L, c->slot)) {
    lua_createtable(jp->L, narr, nrec);
    lua_replace(jp->L, c->slot);
  }
}

/* Moves the waiting elements of an array, one slot each, into its table. */
static void store_array(json_parser *jp, json_open *c)
{
  create_table(jp, c, c->count, 0);
  jp->waiting -= c->count - c->stored;
  for (int i = c->count; i > c->stored; i--)
    lua_rawseti(jp->L, c->slot, i);
  c->stored = c->count;
}

/* Moves the waiting key/value pairs of an object into its table, in
 * input order so that the last of duplicate keys wins. */
static void store_object(json_parser *jp, json_open *c)
{
  lua_State *L = jp->L;
  int top = lua_gettop(L);
  create_table(jp, c, 0, c->count);
  jp->waiting -= 2 * (c->count - c->stored);
  for (int k = c->slot + 1; k < top; k += 2) {
    lua_pushvalue(L, k);
    lua_pushvalue(L, k + 1);
    lua_rawset(L, c->slot);
  }
  lua_settop(L, c->slot);
  c->stored = c->count;
}

/* Counts the element just parsed; says whether to store now. */
static int element_done(json_parser *jp, json_open *c, int slots)
{
  c->count++;
  jp->waiting += slots;
  return c->count - c->stored == JSON_BATCH ||
         jp->waiting > JSON_STACK_BUDGET;
}

/* After an element: skips to the next one, or past the closing bracket.
 * Returns 1 for another element, 0 at the end, -1 on error. */
static int next_element(json_parser *jp, char close, const char *expected)
{
  skip_ws(jp);
  if (*jp->p == ',') {
    jp->p++;
    skip_ws(jp);
    return 1;
  }
  if (*jp->p == close) {
    jp->p++;
    jp->depth--;
    return 0;
  }
  return fail(jp, jp->p, expected);
}

static int parse_array(json_parser *jp)
{
  json_open c;
  int more;
  if (enter(jp, &c) < 0) return -1;
  if (*jp->p == ']') {
    jp->p++;
    jp->depth--;
  } else {
    do {
      if (parse_value(jp) < 0) return -1;
      if (element_done(jp, &c, 1)) store_array(jp, &c);
    } while ((more = next_element(jp, ']', "expected ',' or ']'")) > 0);
    if (more < 0) return -1;
  }
  store_array(jp, &c);
  return 0;
}

static int parse_member(json_parser *jp)
{
  if (*jp->p != '"') return fail(jp, jp->p, "expected a string key");
  if (parse_string(jp) < 0) return -1;
  skip_ws(jp);
  if (*jp->p != ':') return fail(jp, jp->p, "expected ':'");
  jp->p++;
  skip_ws(jp);
  return parse_value(jp);
}

static int parse_object(json_parser *jp)
{
  json_open c;
  int more;
  if (enter(jp, &c) < 0) return -1;
  if (*jp->p == '}') {
    jp->p++;
    jp->depth--;
  } else {
    do {
      if (parse_member(jp) < 0) return -1;
      if (element_done(jp, &c, 2)) store_object(jp, &c);
    } while ((more = next_element(jp, '}', "expected ',' or '}'")) > 0);
    if (more < 0) return -1;
  }
  store_object(jp, &c);
  return 0;
}

/* ------------------------------------------------------------------ */
/* Values */

static int parse_literal(json_parser *jp, const char *word, size_t len)
{
  for (size_t i = 1; i < len; i++)
    if (jp->p[i] != word[i]) return fail(jp, jp->p + i, "invalid literal");
  jp->p += len;
  return 0;
}

/* Pushes the value at jp->p (whitespace already skipped). */
static int parse_value(json_parser *jp)
{
  switch (*jp->p) {
  case '{': return parse_object(jp);
  case '[': return parse_array(jp);
  case '"': return parse_string(jp);
  case 't':
    if (parse_literal(jp, "true", 4) < 0) return -1;
    lua_pushboolean(jp->L, 1);
    return 0;
  case 'f':
    if (parse_literal(jp, "false", 5) < 0) return -1;
    lua_pushboolean(jp->L, 0);
    return 0;
  case 'n':
    if (parse_literal(jp, "null", 4) < 0) return -1;
    lua_pushlightuserdata(jp->L, NULL);
    return 0;
  case '-': case '0': case '1': case '2': case '3': case '4':
  case '5': case '6': case '7': case '8': case '9':
    return parse_number(jp);
  default:
    return fail(jp, jp->p, "expected a value");
  }
}

/* ------------------------------------------------------------------ */
/* Entry points */

int swit__lua_json_decode(lua_State *L)
{
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  json_parser jp = {L, s, s + len, s, NULL, NULL, 0, 0};
  int base = lua_gettop(L);
  skip_ws(&jp);
  if (parse_value(&jp) == 0) {
    skip_ws(&jp);
    if (jp.p == jp.end) return 1;
    fail(&jp, jp.p, "unexpected data after the value");
  }
  lua_settop(L, base);
  lua_pushnil(L);
  lua_pushfstring(L, "invalid JSON at byte %d: %s",
                  (int)(jp.err_at - jp.start) + 1, jp.err);
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
