# brokers/nats/broker.cmake - the NATS adapter (core NATS and JetStream on
# cnats), its nats-server test fixture, its suites and its benchmark.
# Included by the top-level CMakeLists.txt when "nats" is in SWIT_BROKERS.
#
# Tests (ctest -R nats):
#   nats.server.start / nats.server.stop   the fixture: nats-server with
#                       JetStream on 127.0.0.1:${SWIT_NATS_PORT}, state in
#                       <build>/nats-server
#   conformance.nats    the shared conformance suite on core NATS
#                       (registered by spec/CMakeLists.txt)
#   conformance.nats_js the same suite on JetStream
#   nats.<suite>        spec/nats/*_spec.lua: interop, faults, groups, slow
#                       consumer, bad input, health (private servers on
#                       ${SWIT_NATS_PORT} + 10, + 20, + 30)
#   nats.bench.smoke    bench/nats with a small message count
pkg_check_modules(NATS REQUIRED IMPORTED_TARGET libnats)

list(APPEND SWIT_BROKER_SOURCES
  brokers/nats/nats_broker.c
  brokers/nats/nats_conn.c
  brokers/nats/nats_core.c
  brokers/nats/nats_js.c
  brokers/nats/nats_msg.c
  brokers/nats/nats_publish.c)
list(APPEND SWIT_BROKER_INCLUDES ${CMAKE_CURRENT_LIST_DIR})
list(APPEND SWIT_BROKER_LIBS PkgConfig::NATS)
list(APPEND SWIT_BROKER_PKGS libnats)        # for libswit.pc

# Ports away from the defaults (4222/8222); the fault suites start their
# own servers on the next ports up so a restart never disturbs the others.
set(SWIT_NATS_PORT 14222 CACHE STRING "nats-server port of the test fixture")
math(EXPR SWIT_NATS_HTTP "${SWIT_NATS_PORT} + 4000")
set(SWIT_NATS_SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/scripts/nats-server.sh)
set(SWIT_NATS_DIR ${CMAKE_BINARY_DIR}/nats-server)

add_test(NAME nats.server.start
         COMMAND ${SWIT_NATS_SCRIPT} start ${SWIT_NATS_DIR} ${SWIT_NATS_PORT}
                 ${SWIT_NATS_HTTP} --fresh)
add_test(NAME nats.server.stop
         COMMAND ${SWIT_NATS_SCRIPT} stop ${SWIT_NATS_DIR})
set_tests_properties(nats.server.start PROPERTIES FIXTURES_SETUP nats TIMEOUT 30)
set_tests_properties(nats.server.stop PROPERTIES FIXTURES_CLEANUP nats TIMEOUT 30)

set(SWIT_TEST_FIXTURES_nats nats)
set(SWIT_TEST_ENV_nats
  SWIT_TEST_NATS_URL=nats://127.0.0.1:${SWIT_NATS_PORT}
  SWIT_TEST_NATS_PORT=${SWIT_NATS_PORT}
  SWIT_TEST_NATS_SCRIPT=${SWIT_NATS_SCRIPT})

# Test tools: an independent client speaking the plain-text NATS protocol
# over a socket (no cnats), and a cnats JetStream publisher that records
# what the server acknowledged.
add_executable(nats_wire spec/nats/nats_wire.c)
add_executable(nats_jspub spec/nats/nats_jspub.c)
target_link_libraries(nats_jspub PRIVATE PkgConfig::NATS)

add_executable(bench_nats bench/nats/bench_nats.c)
target_link_libraries(bench_nats PRIVATE swit_shared PkgConfig::NATS
                      Threads::Threads)
target_compile_definitions(bench_nats PRIVATE
  BENCH_DIR="${CMAKE_CURRENT_SOURCE_DIR}/bench/nats")
# ENABLE_EXPORTS: the Lua handler calls bench_nats_seen through ffi.C.
set_target_properties(bench_nats PROPERTIES ENABLE_EXPORTS ON
  RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bench/nats)

# The JetStream variant of the conformance suite.
add_test(NAME conformance.nats_js
         COMMAND ${BUSTED} --lua=luajit -o utfTerminal
                 ${CMAKE_CURRENT_SOURCE_DIR}/spec/conformance/conformance_spec.lua
         WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})

set(SWIT_NATS_SPEC_ENV
  SWIT_TEST_BIN=$<TARGET_FILE:swit>
  SWIT_TEST_ROOT=${CMAKE_CURRENT_SOURCE_DIR}
  SWIT_TEST_TMP=${CMAKE_BINARY_DIR}/spec/tmp
  SWIT_TEST_NATS_WIRE=$<TARGET_FILE:nats_wire>
  SWIT_TEST_NATS_JSPUB=$<TARGET_FILE:nats_jspub>
  SWIT_TEST_NATS_DIR=${CMAKE_BINARY_DIR}/nats-faults
  ${SWIT_TEST_ENV_nats})
if(SWIT_SANITIZE)
  list(APPEND SWIT_NATS_SPEC_ENV SWIT_TEST_SANITIZED=1)
endif()
set_tests_properties(conformance.nats_js PROPERTIES TIMEOUT 600
  FIXTURES_REQUIRED nats
  ENVIRONMENT "${SWIT_NATS_SPEC_ENV};SWIT_TEST_BROKER=nats_js")

file(GLOB SWIT_NATS_SPECS CONFIGURE_DEPENDS
     ${CMAKE_CURRENT_SOURCE_DIR}/spec/nats/*_spec.lua)
foreach(spec IN LISTS SWIT_NATS_SPECS)
  get_filename_component(name ${spec} NAME_WE)
  string(REGEX REPLACE "_spec$" "" name ${name})
  add_test(NAME nats.${name}
           COMMAND ${BUSTED} --lua=luajit -o utfTerminal ${spec}
           WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
  set_tests_properties(nats.${name} PROPERTIES TIMEOUT 300
    FIXTURES_REQUIRED nats ENVIRONMENT "${SWIT_NATS_SPEC_ENV}")
endforeach()

add_test(NAME nats.bench.smoke
         COMMAND bench_nats --url nats://127.0.0.1:${SWIT_NATS_PORT}
                 --messages 20000 --repeat 1)
set_tests_properties(nats.bench.smoke PROPERTIES TIMEOUT 120
                     FIXTURES_REQUIRED nats)
