/*
 * test_json.c - unit tests of the JSON decoder behind msg:json()
 * (bindings/lua_json.c): every JSON type, escapes, numbers checked bit
 * for bit against strtod, every rejected form with its message and byte
 * offset, the depth limit, the null sentinel, large inputs, and a
 * differential run against lua-cjson on varied documents. One embedded
 * lua_State, single-threaded; decode is always entered through lua_pcall
 * so that a raise would be seen as a failure, not a crash.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "check.h"
#include "lua_json.h"

static lua_State *L;

/* ------------------------------------------------------------------ */
/* Helpers */

/* Runs decode(doc[0..len)) through lua_pcall; leaves value and message
 * at stack indexes 1 and 2. Returns the pcall status. */
static int decode(const char *doc, size_t len)
{
  lua_settop(L, 0);
  lua_pushcfunction(L, swit__lua_json_decode);
  lua_pushlstring(L, doc, len);
  return lua_pcall(L, 1, 2, 0);
}

/* decode(doc) must fail softly with exactly this message. */
static int fails_with(const char *doc, size_t len, const char *want)
{
  const char *got;
  if (decode(doc, len) != 0 || !lua_isnil(L, 1)) return 0;
  got = lua_tostring(L, 2);
  if (got && strcmp(got, want) == 0) return 1;
  fprintf(stderr, "  for %.40s: got \"%s\"\n", doc, got ? got : "(none)");
  return 0;
}
#define FAILS(doc, want) CHECK(fails_with((doc), strlen(doc), (want)))

/* decode(doc) must fail softly, whatever the message. */
static int rejects(const char *doc, size_t len)
{
  return decode(doc, len) == 0 && lua_isnil(L, 1) && lua_isstring(L, 2);
}
#define REJECTS(doc) CHECK(rejects((doc), strlen(doc)))

/* decode(doc) must give a number bit-identical to want. */
static int gives_number(const char *doc, double want)
{
  double got;
  if (decode(doc, strlen(doc)) != 0 || lua_type(L, 1) != LUA_TNUMBER)
    return 0;
  got = lua_tonumber(L, 1);
  if (memcmp(&got, &want, sizeof got) == 0) return 1;
  fprintf(stderr, "  for %s: got %.17g, want %.17g\n", doc, got, want);
  return 0;
}
#define NUMBER_IS_STRTOD(doc) CHECK(gives_number((doc), strtod((doc), NULL)))

/* decode(doc) must give a string with exactly these bytes. */
static int gives_string(const char *doc, const char *want, size_t wlen)
{
  size_t len;
  const char *got;
  if (decode(doc, strlen(doc)) != 0 || lua_type(L, 1) != LUA_TSTRING)
    return 0;
  got = lua_tolstring(L, 1, &len);
  return len == wlen && memcmp(got, want, len) == 0;
}
#define STRING_IS(doc, want) \
  CHECK(gives_string((doc), (want), sizeof(want) - 1))

/* Runs a Lua chunk that returns a boolean (see the globals in main). */
static int lua_true(const char *chunk)
{
  int ok;
  lua_settop(L, 0);
  if (luaL_dostring(L, chunk) != 0) {
    fprintf(stderr, "  chunk error: %s\n", lua_tostring(L, -1));
    return 0;
  }
  ok = lua_toboolean(L, -1);
  if (!ok) fprintf(stderr, "  false: %s\n", chunk);
  return ok;
}
#define LUA_TRUE(chunk) CHECK(lua_true(chunk))

/* Globals for the chunks: decode, cjson, null and a deep compare that
 * also tells -0 from 0. */
static const char lua_helpers[] =
  "json = ...\n"
  "decode, null, cjson = json.decode, json.null, require 'cjson'\n"
  "function eq(a, b)\n"
  "  if type(a) ~= type(b) then return false end\n"
  "  if type(a) == 'number' then\n"
  "    return a == b and (a ~= 0 or 1 / a == 1 / b)\n"
  "  end\n"
  "  if type(a) ~= 'table' then return a == b end\n"
  "  for k, v in pairs(a) do if not eq(v, b[k]) then return false end end\n"
  "  for k in pairs(b) do if a[k] == nil then return false end end\n"
  "  return true\n"
  "end\n";

static char *repeat(const char *head, const char *unit, size_t n,
                    const char *tail)
{
  size_t hl = strlen(head), ul = strlen(unit), tl = strlen(tail);
  char *s = malloc(hl + ul * n + tl + 1), *p = s;
  if (!s) abort();
  memcpy(p, head, hl), p += hl;
  for (size_t i = 0; i < n; i++) memcpy(p, unit, ul), p += ul;
  memcpy(p, tail, tl + 1);
  return s;
}

/* ------------------------------------------------------------------ */
/* Values */

static void it_decodes_every_scalar_at_the_top_level(void)
{
  CHECK(decode("true", 4) == 0 && lua_type(L, 1) == LUA_TBOOLEAN &&
        lua_toboolean(L, 1));
  CHECK(decode("false", 5) == 0 && lua_type(L, 1) == LUA_TBOOLEAN &&
        !lua_toboolean(L, 1));
  CHECK(gives_number("42", 42.0));
  STRING_IS("\"hello\"", "hello");
  STRING_IS("\"\"", "");
  CHECK(decode(" \t\r\n[ 1 , 2 ] \n\r\t ", 18) == 0 && lua_istable(L, 1));
}

static void it_decodes_null_as_the_cjson_sentinel(void)
{
  CHECK(decode("null", 4) == 0 && lua_type(L, 1) == LUA_TLIGHTUSERDATA &&
        lua_touserdata(L, 1) == NULL);
  LUA_TRUE("return decode 'null' == cjson.null and null == cjson.null");
  LUA_TRUE("local t = decode '[1,null,3]'\n"
           "return t[2] == cjson.null and #t == 3");
  LUA_TRUE("local t = decode '{\"a\":null}' return t.a == null");
}

static void it_decodes_objects_and_arrays(void)
{
  LUA_TRUE("return eq(decode '{}', {}) and eq(decode '[]', {})");
  LUA_TRUE("return eq(decode ' { } ', {}) and eq(decode ' [ ] ', {})");
  LUA_TRUE("return eq(decode [[{\"a\":1,\"b\":[true,false,\"x\"],"
           "\"c\":{\"d\":{}}}]], {a=1, b={true,false,'x'}, c={d={}}})");
  LUA_TRUE("local t = decode '[[],[[]],[1,[2,[3]]]]'\n"
           "return eq(t, {{}, {{}}, {1, {2, {3}}}})");
  LUA_TRUE("local t = decode '{\"1\":\"one\"}' return t['1'] == 'one' and "
           "t[1] == nil");
}

static void it_keeps_the_last_of_duplicate_keys(void)
{
  LUA_TRUE("return decode('{\"a\":1,\"a\":2}').a == 2");
  LUA_TRUE("local t = decode '{\"a\":1,\"b\":2,\"a\":3,\"b\":4,\"c\":5}'\n"
           "return eq(t, {a=3, b=4, c=5})");
  LUA_TRUE("return decode('{\"a\":1,\"\\\\u0061\":2}').a == 2");
  LUA_TRUE("return decode('{\"\\\\u0061\":1,\"a\":2}').a == 2");
  /* keys that repeat across the batches of a large object */
  LUA_TRUE("local parts = {}\n"
           "for i = 0, 99 do parts[#parts+1] = ('\"k%d\":%d'):format(i % 40, i) end\n"
           "local t = decode('{' .. table.concat(parts, ',') .. '}')\n"
           "for i = 0, 39 do\n"
           "  local want = i < 20 and 80 + i or 40 + i\n"
           "  if t['k' .. i] ~= want then return false end\n"
           "end\n"
           "local n = 0 for _ in pairs(t) do n = n + 1 end return n == 40");
}

/* ------------------------------------------------------------------ */
/* Strings */

static void it_unescapes_every_escape(void)
{
  STRING_IS("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"",
            "\" \\ / \b \f \n \r \t");
  STRING_IS("\"caf\\u00e9\"", "caf\xc3\xa9");
  STRING_IS("\"caf\\u00E9\"", "caf\xc3\xa9");
  STRING_IS("\"\\u0041\\u07ff\\u0800\\u20ac\\uffff\"",
            "A\xdf\xbf\xe0\xa0\x80\xe2\x82\xac\xef\xbf\xbf");
  STRING_IS("\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80");
  STRING_IS("\"\\udbff\\udfff\"", "\xf4\x8f\xbf\xbf");
  STRING_IS("\"a\\u0000b\"", "a\0b");
  STRING_IS("\"raw \xc3\xa9 \xf0\x9f\x98\x80 kept\"",
            "raw \xc3\xa9 \xf0\x9f\x98\x80 kept");
  STRING_IS("\"x\\n\"", "x\n");
  STRING_IS("\"\\nx\"", "\nx");
  LUA_TRUE("return decode('{\"k\\\\u0065y\":1}').key == 1");
}

static void it_rejects_bad_escapes_surrogates_and_controls(void)
{
  FAILS("\"\\q\"", "invalid JSON at byte 3: invalid escape in string");
  FAILS("\"\\x41\"", "invalid JSON at byte 3: invalid escape in string");
  FAILS("\"\\U0041\"", "invalid JSON at byte 3: invalid escape in string");
  FAILS("\"ab\\u12G4\"", "invalid JSON at byte 8: invalid \\u escape");
  REJECTS("\"\\u12\"");
  FAILS("\"\\ud83d\"",
        "invalid JSON at byte 8: high surrogate not followed by a low one");
  FAILS("\"\\ud83d\\n\"",
        "invalid JSON at byte 9: high surrogate not followed by a low one");
  FAILS("\"\\ud83d\\u0041\"",
        "invalid JSON at byte 8: high surrogate not followed by a low one");
  FAILS("\"\\ud83d\\ud8",
        "invalid JSON at byte 12: unexpected end of input");
  REJECTS("\"\\ud83dx\"");
  REJECTS("\"\\ud83d\\ud83d\"");
  FAILS("\"\\ude00\"",
        "invalid JSON at byte 2: lone low surrogate in \\u escape");
  FAILS("\"a\tb\"", "invalid JSON at byte 3: control character in string");
  FAILS("\"a\nb\"", "invalid JSON at byte 3: control character in string");
  FAILS("\"a\x1f\"", "invalid JSON at byte 3: control character in string");
  FAILS("\"\\n\x01\"", "invalid JSON at byte 4: control character in string");
  CHECK(fails_with("\"a\0b\"", 5,
                   "invalid JSON at byte 3: control character in string"));
  FAILS("\"abc", "invalid JSON at byte 5: unexpected end of input");
  FAILS("\"abc\\", "invalid JSON at byte 6: unexpected end of input");
  FAILS("\"ab\\u00", "invalid JSON at byte 8: unexpected end of input");
  FAILS("{\"a\tb\":1}", "invalid JSON at byte 4: control character in string");
}

/* ------------------------------------------------------------------ */
/* Numbers */

static void it_reads_numbers_exactly_as_strtod(void)
{
  static const char *const docs[] = {
    "0", "-0", "1", "-1", "1e3", "1E-3", "1e+2", "123456789012345",
    "9007199254740992", "9007199254740993", "9007199254740993.0",
    "18446744073709551615", "9999999999999999999", "12345678901234567890123",
    "0.1", "0.2", "0.3", "3.14159", "-2.5e-7", "9.5", "120.0", "1e22",
    "1e23", "1e-22", "1e-23", "4.35", "0.000001", "123.456e-5",
    "9007199254740992e22", "1.7976931348623157e308", "1e308", "1e-307",
    "2.2250738585072011e-308", "4.9e-324", "1e-400", "0e400", "-0.0",
    "1e400", "-1e400", "0.1e1", "100e-2", "5e-324",
    "2.718281828459045235360287471352662497757",
    "0.00000000000000000000000000000000000001",
    "179769313486231580793728971405303415079934132710037826936173778980444"
    "968292764750946649017977587207096330286416692887910946555547851940402"
    "630657488671505820681908902000708383676273854845817711531764475730270"
    "069855571366959622842914819860834936475292719074168444365510704342711"
    "559699508093042880177904174497792",
  };
  for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++)
    NUMBER_IS_STRTOD(docs[i]);
  CHECK(gives_number("1e400", HUGE_VAL));
  CHECK(gives_number("-1e400", -HUGE_VAL));
  CHECK(gives_number("-0", -0.0) && signbit(lua_tonumber(L, 1)));
  CHECK(gives_number("9007199254740993", 9007199254740992.0));
}

static uint64_t rng = 0x9e3779b97f4a7c15u;

/* xorshift64: the same sequence on every run. */
static unsigned next_rand(unsigned bound)
{
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (unsigned)(rng % bound);
}

/* A random JSON number: sign, integer part, fraction, exponent. */
static void random_number(char *p)
{
  unsigned intlen = next_rand(21), fraclen = next_rand(23);
  unsigned explen = next_rand(4);
  if (next_rand(2)) *p++ = '-';
  if (intlen == 0) *p++ = '0';
  for (unsigned d = 0; d < intlen; d++)
    *p++ = (char)('0' + (d == 0 ? 1 + next_rand(9) : next_rand(10)));
  if (fraclen) *p++ = '.';
  for (unsigned d = 0; d < fraclen; d++) *p++ = (char)('0' + next_rand(10));
  if (explen) {
    *p++ = next_rand(2) ? 'e' : 'E';
    if (next_rand(2)) *p++ = next_rand(2) ? '-' : '+';
    for (unsigned d = 0; d < explen; d++) *p++ = (char)('0' + next_rand(10));
  }
  *p = '\0';
}

/* Random numbers of every shape, each compared bit for bit with strtod. */
static void it_agrees_with_strtod_on_random_numbers(void)
{
  int mismatches = 0;
  for (int i = 0; i < 50000; i++) {
    char doc[64];
    random_number(doc);
    if (!gives_number(doc, strtod(doc, NULL))) mismatches++;
  }
  CHECK(mismatches == 0);
}

static void it_rejects_numbers_outside_the_json_grammar(void)
{
  FAILS("01", "invalid JSON at byte 1: leading zero in number");
  FAILS("-012", "invalid JSON at byte 2: leading zero in number");
  FAILS("00", "invalid JSON at byte 1: leading zero in number");
  FAILS("+1", "invalid JSON at byte 1: expected a value");
  FAILS(".5", "invalid JSON at byte 1: expected a value");
  FAILS("1.", "invalid JSON at byte 3: unexpected end of input");
  FAILS("[1.]", "invalid JSON at byte 4: expected a digit after '.'");
  FAILS("1.e5", "invalid JSON at byte 3: expected a digit after '.'");
  FAILS("1e", "invalid JSON at byte 3: unexpected end of input");
  FAILS("[1e+]", "invalid JSON at byte 5: expected a digit in the exponent");
  FAILS("-", "invalid JSON at byte 2: unexpected end of input");
  FAILS("-a", "invalid JSON at byte 2: expected a digit");
  FAILS("--1", "invalid JSON at byte 2: expected a digit");
  FAILS("0x10", "invalid JSON at byte 2: unexpected data after the value");
  FAILS("1.5.3", "invalid JSON at byte 4: unexpected data after the value");
  REJECTS("NaN");
  REJECTS("nan");
  REJECTS("Infinity");
  REJECTS("-Infinity");
  REJECTS("inf");
  REJECTS("[1,-]");
  REJECTS("1e5.5");
}

/* ------------------------------------------------------------------ */
/* Invalid documents */

static void it_rejects_malformed_documents_with_the_byte_offset(void)
{
  FAILS("", "invalid JSON at byte 1: unexpected end of input");
  FAILS("   ", "invalid JSON at byte 4: unexpected end of input");
  FAILS("{\"a\":1 \"b\":2}", "invalid JSON at byte 8: expected ',' or '}'");
  FAILS("[1 2]", "invalid JSON at byte 4: expected ',' or ']'");
  FAILS("[1,2", "invalid JSON at byte 5: unexpected end of input");
  FAILS("[1,]", "invalid JSON at byte 4: expected a value");
  FAILS("[,1]", "invalid JSON at byte 2: expected a value");
  FAILS("{\"a\":1,}", "invalid JSON at byte 8: expected a string key");
  FAILS("{1:2}", "invalid JSON at byte 2: expected a string key");
  FAILS("{'a':1}", "invalid JSON at byte 2: expected a string key");
  FAILS("{\"a\" 1}", "invalid JSON at byte 6: expected ':'");
  FAILS("{\"a\":}", "invalid JSON at byte 6: expected a value");
  FAILS("{\"a\"", "invalid JSON at byte 5: unexpected end of input");
  FAILS("[1] x", "invalid JSON at byte 5: unexpected data after the value");
  FAILS("{} {}", "invalid JSON at byte 4: unexpected data after the value");
  FAILS("tru", "invalid JSON at byte 4: unexpected end of input");
  FAILS("trUe", "invalid JSON at byte 3: invalid literal");
  FAILS("nul", "invalid JSON at byte 4: unexpected end of input");
  FAILS("[falsy]", "invalid JSON at byte 6: invalid literal");
  FAILS("True", "invalid JSON at byte 1: expected a value");
  FAILS("'a'", "invalid JSON at byte 1: expected a value");
  FAILS("]", "invalid JSON at byte 1: expected a value");
  FAILS("\f1", "invalid JSON at byte 1: expected a value");
  FAILS("[1]\v", "invalid JSON at byte 4: unexpected data after the value");
  CHECK(fails_with("[1]\0", 4,
                   "invalid JSON at byte 4: unexpected data after the value"));
  CHECK(fails_with("[\0]", 3, "invalid JSON at byte 2: expected a value"));
  REJECTS("{\"a\":[1,{\"b\":2]}");
  REJECTS("[[[]]");
  REJECTS("truefalse");
  REJECTS("nulll");
}

static void it_raises_only_for_a_non_string_argument(void)
{
  lua_settop(L, 0);
  lua_pushcfunction(L, swit__lua_json_decode);
  lua_pushnil(L);
  CHECK(lua_pcall(L, 1, 2, 0) != 0);
  LUA_TRUE("local v, err = decode('[1,') return v == nil and "
           "err == 'invalid JSON at byte 4: unexpected end of input'");
}

/* ------------------------------------------------------------------ */
/* Depth and size */

static void it_limits_nesting_to_1000_levels(void)
{
  char *ok = repeat("", "[", 1000, ""), *over = repeat("", "[", 1001, "");
  char *okc = repeat(ok, "]", 1000, ""), *overc = repeat(over, "]", 1001, "");
  char *objs = repeat("", "{\"a\":", 1000, "1");
  char *objsc = repeat(objs, "}", 1000, "");
  CHECK(decode(okc, strlen(okc)) == 0 && lua_istable(L, 1));
  CHECK(fails_with(overc, strlen(overc),
                   "invalid JSON at byte 1001: nesting deeper than 1000 levels"));
  CHECK(decode(objsc, strlen(objsc)) == 0 && lua_istable(L, 1));
  lua_settop(L, 1);
  lua_setglobal(L, "deep");
  LUA_TRUE("local t, n = deep, 0\n"
           "while type(t) == 'table' do t, n = t.a, n + 1 end\n"
           "return n == 1000 and t == 1");
  free(ok), free(over), free(okc), free(overc), free(objs), free(objsc);
}

/* 1000 levels, each with 31 elements waiting before the nested one. */
static void it_decodes_wide_deep_documents(void)
{
  char *arr = repeat("", "[0,1,2,3,4,5,6,7,8,9,0,1,2,3,4,5,6,7,8,9,"
                     "0,1,2,3,4,5,6,7,8,9,0,", 1000, "0");
  char *arrc = repeat(arr, "]", 1000, "");
  char *obj = repeat("", "{\"a\":0,\"b\":1,\"c\":2,\"d\":3,\"e\":4,\"f\":5,"
                     "\"g\":6,\"h\":7,\"i\":8,\"j\":9,\"k\":10,\"l\":11,"
                     "\"m\":12,\"n\":13,\"o\":14,\"p\":15,\"q\":16,\"r\":17,"
                     "\"s\":18,\"t\":19,\"u\":20,\"v\":21,\"w\":22,\"x\":23,"
                     "\"y\":24,\"z\":25,\"A\":26,\"B\":27,\"C\":28,\"D\":29,"
                     "\"E\":30,\"next\":", 1000, "null");
  char *objc = repeat(obj, "}", 1000, "");
  CHECK(decode(arrc, strlen(arrc)) == 0 && lua_istable(L, 1));
  lua_settop(L, 1);
  lua_setglobal(L, "wide");
  LUA_TRUE("local t, n = wide, 0\n"
           "while type(t) == 'table' do\n"
           "  if #t ~= 32 or t[31] ~= 0 or t[10] ~= 9 then return false end\n"
           "  n = n + 1 t = t[32]\n"
           "end\n"
           "return n == 1000 and t == 0");
  CHECK(decode(objc, strlen(objc)) == 0 && lua_istable(L, 1));
  lua_settop(L, 1);
  lua_setglobal(L, "wide");
  LUA_TRUE("local t, n = wide, 0\n"
           "while type(t) == 'table' do\n"
           "  if t.a ~= 0 or t.E ~= 30 then return false end\n"
           "  n = n + 1 t = t.next\n"
           "end\n"
           "return n == 1000 and t == null");
  lua_pushnil(L);
  lua_setglobal(L, "wide");
  free(arr), free(arrc), free(obj), free(objc);
}

static void it_decodes_large_inputs(void)
{
  char *nums = repeat("[", "12345,", 174762, "-1]");
  char *strs = repeat("", "abcdefghi\\n", 100000, "");
  char *str = repeat("\"", strs, 1, "\"");
  char *plain = repeat("\"", "0123456789abcdef", 65536, "\"");
  CHECK(strlen(nums) > 1000000);
  CHECK(decode(nums, strlen(nums)) == 0 && lua_istable(L, 1) &&
        lua_objlen(L, 1) == 174763);
  lua_settop(L, 1);
  lua_setglobal(L, "big");
  LUA_TRUE("for i = 1, #big - 1 do if big[i] ~= 12345 then return false end end\n"
           "return big[#big] == -1");
  CHECK(decode(str, strlen(str)) == 0 && lua_objlen(L, 1) == 1000000);
  LUA_TRUE("local s = decode('\"' .. ('abcdefghi\\\\n'):rep(100000) .. '\"')\n"
           "return s == ('abcdefghi\\n'):rep(100000)");
  CHECK(decode(plain, strlen(plain)) == 0 && lua_objlen(L, 1) == 1048576);
  LUA_TRUE("local parts = {}\n"
           "for i = 1, 5000 do parts[i] = ('\"key%d\":[%d,{\"v\":\"x\"}]')"
           ":format(i, i) end\n"
           "local t = decode('{' .. table.concat(parts, ',') .. '}')\n"
           "for i = 1, 5000 do\n"
           "  local e = t['key' .. i]\n"
           "  if e[1] ~= i or e[2].v ~= 'x' then return false end\n"
           "end\n"
           "return true");
  lua_pushnil(L);
  lua_setglobal(L, "big");
  free(nums), free(strs), free(str), free(plain);
}

/* ------------------------------------------------------------------ */
/* Against lua-cjson */

static const char *const corpus[] = {
  "{\"id\":\"order-12345\",\"customer\":\"customer-42\",\"currency\":\"EUR\","
  "\"items\":[{\"sku\":\"A-1\",\"qty\":2,\"price\":9.5},{\"sku\":\"B-7\","
  "\"qty\":1,\"price\":120.0}],\"note\":\"leave at the front door\","
  "\"priority\":false}",
  "{}", "[]", "[{}]", "[[]]", "{\"a\":{}}", "{\"a\":[]}",
  "0", "-0", "1.5", "-1e-5", "1E+30", "123456789012345678901234567890",
  "\"\"", "\"plain\"", "true", "false", "null",
  "[null,null]", "{\"n\":null,\"t\":true,\"f\":false}",
  "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,"
  "27,28,29,30,31,32,33,34,35,36,37,38,39,40]",
  "[0.1,0.2,0.30000000000000004,1e-7,5e-324,1.7976931348623157e308]",
  "[9007199254740991,9007199254740992,9007199254740993,-9007199254740993]",
  "[1e400,-1e400,1e-400]",
  "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"",
  "\"\\u0000\\u001f\\u0020\\u007f\\u0080\\u07ff\\u0800\\uffff\"",
  "\"\\ud800\\udc00\\udbff\\udfff\\ud83d\\ude00\"",
  "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"",
  "{\"\\u00e9\":\"\\u00E9\",\"e\\u0301\":2}",
  "{\"a\":1,\"a\":2,\"a\":3}",
  "{\"x\":{\"y\":{\"z\":[1,{\"w\":[2,[3,{\"v\":null}]]}]}}}",
  " \t\n\r{ \"a\" : [ 1 , 2 , { \"b\" : \"c\" } ] } \n ",
  "[\"a\",\"bb\",\"ccc\",\"dddd\",\"eeeee\",\"ffffff\",\"ggggggg\","
  "\"hhhhhhhh\",\"iiiiiiiii\"]",
  "{\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,\"k5\":5,\"k6\":6,\"k7\":7,\"k8\":8,"
  "\"k9\":9,\"k10\":10,\"k11\":11,\"k12\":12,\"k13\":13,\"k14\":14,\"k15\":15,"
  "\"k16\":16,\"k17\":17,\"k18\":18,\"k19\":19,\"k20\":20,\"k21\":21,"
  "\"k22\":22,\"k23\":23,\"k24\":24,\"k25\":25,\"k26\":26,\"k27\":27,"
  "\"k28\":28,\"k29\":29,\"k30\":30,\"k31\":31,\"k32\":32,\"k33\":33,"
  "\"k34\":34,\"k35\":35}",
  "{\"\":\"empty key\",\" \":\"space key\"}",
  "[\"\\\\u0041 is not an escape here\"]",
  "{\"event\":\"user.signup\",\"ts\":1700000000123,\"user\":{\"id\":98765,"
  "\"email\":\"a@example.com\",\"tags\":[\"beta\",\"eu\"],\"score\":0.87}}",
  "{\"type\":\"FeatureCollection\",\"features\":[{\"type\":\"Feature\","
  "\"geometry\":{\"type\":\"Point\",\"coordinates\":[102.0,0.5]},"
  "\"properties\":{\"prop0\":\"value0\"}}]}",
  "[[1,2],[3,4],[5,6],[7,8]]",
  "[-1,-0.5,-0,0,0.5,1]",
  "[1.0,2.50,3.125,100.000]",
  "{\"price\":19.99,\"qty\":3,\"total\":59.97}",
  "[123e-2,123E2,1.23e+2,0.0123e4]",
  "{\"nested\":[[[[[[[[[[\"deep\"]]]]]]]]]]}",
  "\"line1\\nline2\\ttabbed\\r\\n\"",
  "{\"html\":\"<a href=\\\"x\\\">\\u003c/a\\u003e</a>\"}",
  "[true,false,null,0,\"\",[],{}]",
  "{\"a\":[{\"b\":[{\"c\":[{\"d\":1}]}]}]}",
  "[\"\\u4e2d\\u6587\",\"\xe4\xb8\xad\xe6\x96\x87\"]",
  "{\"big\":1.7976931348623157e308,\"small\":2.2250738585072014e-308}",
  "[0.1e1,0.01e2,10e-1,1000e-3]",
  "{\"id\":\"550e8400-e29b-41d4-a716-446655440000\",\"ok\":true}",
};

static void it_matches_lua_cjson_on_a_corpus(void)
{
  static const char same[] =
    "local doc = ...\n"
    "local ok, want = pcall(cjson.decode, doc)\n"
    "return ok and eq(decode(doc), want)";
  int failures = 0;
  CHECK(luaL_loadstring(L, same) == 0);
  lua_setglobal(L, "same_as_cjson");
  for (size_t i = 0; i < sizeof corpus / sizeof corpus[0]; i++) {
    lua_settop(L, 0);
    lua_getglobal(L, "same_as_cjson");
    lua_pushstring(L, corpus[i]);
    if (lua_pcall(L, 1, 1, 0) != 0 || !lua_toboolean(L, -1)) {
      fprintf(stderr, "  differs from cjson: %s\n", corpus[i]);
      failures++;
    }
  }
  CHECK(failures == 0);
  CHECK(sizeof corpus / sizeof corpus[0] >= 50);
}

/* ------------------------------------------------------------------ */

int main(void)
{
  L = luaL_newstate();
  if (!L) return 2;
  luaL_openlibs(L);
  lua_pushcfunction(L, swit__luaopen_json);
  if (lua_pcall(L, 0, 1, 0) != 0 || luaL_loadstring(L, lua_helpers) != 0)
    return 2;
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 0, 0) != 0) {
    fprintf(stderr, "setup: %s\n", lua_tostring(L, -1));
    return 2;
  }

  it_decodes_every_scalar_at_the_top_level();
  it_decodes_null_as_the_cjson_sentinel();
  it_decodes_objects_and_arrays();
  it_keeps_the_last_of_duplicate_keys();
  it_unescapes_every_escape();
  it_rejects_bad_escapes_surrogates_and_controls();
  it_reads_numbers_exactly_as_strtod();
  it_agrees_with_strtod_on_random_numbers();
  it_rejects_numbers_outside_the_json_grammar();
  it_rejects_malformed_documents_with_the_byte_offset();
  it_raises_only_for_a_non_string_argument();
  it_limits_nesting_to_1000_levels();
  it_decodes_wide_deep_documents();
  it_decodes_large_inputs();
  it_matches_lua_cjson_on_a_corpus();

  lua_close(L);
  return check_done("json");
}
