# spec/c/symbols.cmake - test lib.symbols: libswit.so exports the public
# API and nothing else. Run with cmake -P:
#   -DNM=nm -DLIB=libswit.so -DHEADER=host/include/swit/swit.h
# Fails on a defined dynamic symbol that is not a function declared
# SWIT_API in swit.h (an internal swit__ function, an FFI export, a
# symbol of a library compiled in), and on a SWIT_API function the
# library does not export.
execute_process(COMMAND ${NM} -D --defined-only ${LIB}
                OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NM} -D --defined-only ${LIB} failed (${rc})")
endif()
file(READ ${HEADER} header)
string(REGEX MATCHALL "SWIT_API[^(;]*[ *]swit_[a-z0-9_]+\\(" decls "${header}")
set(api "")
foreach(d IN LISTS decls)
  string(REGEX REPLACE ".*[ *](swit_[a-z0-9_]+)\\($" "\\1" name "${d}")
  list(APPEND api ${name})
endforeach()
list(LENGTH api napi)
if(napi LESS 10)
  message(FATAL_ERROR "found only ${napi} SWIT_API declarations in ${HEADER}")
endif()

string(REPLACE "\n" ";" lines "${out}")
set(exported "")
set(bad "")
foreach(line IN LISTS lines)
  if(line MATCHES "^[0-9a-fA-F]* *[A-Za-z] (.+)$")
    set(sym ${CMAKE_MATCH_1})
    string(REGEX REPLACE "@.*" "" sym "${sym}")
    list(APPEND exported ${sym})
    list(FIND api ${sym} i)
    if(i LESS 0)
      list(APPEND bad ${sym})
    endif()
  endif()
endforeach()
set(missing "")
foreach(name IN LISTS api)
  list(FIND exported ${name} i)
  if(i LESS 0)
    list(APPEND missing ${name})
  endif()
endforeach()
list(LENGTH exported nexp)
if(bad OR missing)
  string(REPLACE ";" " " bad "${bad}")
  string(REPLACE ";" " " missing "${missing}")
  message(FATAL_ERROR "libswit.so exports symbols that are not public API: "
          "[${bad}]; SWIT_API functions it does not export: [${missing}]")
endif()
message(STATUS "libswit.so exports ${nexp} symbols, all SWIT_API in swit.h")
