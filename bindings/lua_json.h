/*
 * lua_json.h - the JSON decoder behind msg:json(), as Lua C functions.
 *
 * Both are classic lua_CFunctions (they build Lua values, so they are not
 * FFI exports) and run on whichever worker thread owns L.
 */
#ifndef SWIT_LUA_JSON_H
#define SWIT_LUA_JSON_H

#include <lua.h>

/* decode(s): the Lua value for the JSON text s, with lua-cjson's default
 * mapping (null is lightuserdata NULL, numbers are doubles). Invalid JSON
 * returns nil and "invalid JSON at byte N: ..." (N 1-based); only a
 * non-string argument or running out of memory raises. The result is a
 * fresh value owned by L; s is only read. */
int swit__lua_json_decode(lua_State *L);

/* Pushes the module table { decode = swit__lua_json_decode,
 * null = lightuserdata NULL } and returns 1. */
int swit__luaopen_json(lua_State *L);

#endif /* SWIT_LUA_JSON_H */
