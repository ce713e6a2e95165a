# brokers/nats/broker.cmake - the NATS adapter (core NATS and JetStream on
# cnats), its nats-server test fixture, its suites and its benchmark.
# Included by the top-level CMakeLists.txt when "nats" is in SWIT_BROKERS.
#
# Tests (ctest -R nats):
#   nats.server.start / nats.server.stop   the fixture: nats-server with
#                       JetStream on free ports of 127.0.0.1 probed at
#                       start, state in <build>/nats-server (its URL in
#                       <build>/nats-server/url, read by the specs)
#   conformance.nats    the shared conformance suite on core NATS
#                       (registered by spec/CMakeLists.txt)
#   conformance.nats_js the same suite on JetStream
#   nats.<suite>        spec/nats/*_spec.lua: interop, faults, groups, slow
#                       consumer, bad input, health (private servers on
#                       free ports of their own)
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

# Free ports probed when the fixture starts (never fixed ones: two build
# trees test at once); the fault suites start their own servers the same
# way so a restart never disturbs the others.
set(SWIT_NATS_SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/scripts/nats-server.sh)
set(SWIT_NATS_DIR ${CMAKE_BINARY_DIR}/nats-server)

add_test(NAME nats.server.start
         COMMAND ${SWIT_NATS_SCRIPT} start ${SWIT_NATS_DIR} auto auto --fresh)
add_test(NAME nats.server.stop
         COMMAND ${SWIT_NATS_SCRIPT} stop ${SWIT_NATS_DIR})
set_tests_properties(nats.server.start PROPERTIES FIXTURES_SETUP nats TIMEOUT 30)
set_tests_properties(nats.server.stop PROPERTIES FIXTURES_CLEANUP nats TIMEOUT 30)

set(SWIT_TEST_FIXTURES_nats nats)
set(SWIT_TEST_ENV_nats
  SWIT_TEST_NATS_RUN=${SWIT_NATS_DIR}
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

swit_require_tool(nats-server curl)

set(SWIT_NATS_SPEC_ENV
  SWIT_TEST_BIN=$<TARGET_FILE:swit>
  SWIT_TEST_ROOT=${CMAKE_CURRENT_SOURCE_DIR}
  SWIT_TEST_TMP=${CMAKE_BINARY_DIR}/spec/tmp
  SWIT_TEST_NATS_WIRE=$<TARGET_FILE:nats_wire>
  SWIT_TEST_NATS_JSPUB=$<TARGET_FILE:nats_jspub>
  SWIT_TEST_NATS_DIR=${CMAKE_BINARY_DIR}/nats-faults
  ${SWIT_TEST_ENV_nats})
# The JetStream variant of the conformance suite, then spec/nats/.
swit_add_busted(NAME conformance.nats_js
                SPEC ${CMAKE_CURRENT_SOURCE_DIR}/spec/conformance/conformance_spec.lua
                WORKDIR ${CMAKE_CURRENT_SOURCE_DIR} TIMEOUT 600
                ENV ${SWIT_NATS_SPEC_ENV} SWIT_TEST_BROKER=nats_js)
swit_add_busted_dir(PREFIX nats DIR ${CMAKE_CURRENT_SOURCE_DIR}/spec/nats
                    WORKDIR ${CMAKE_CURRENT_SOURCE_DIR} ENV ${SWIT_NATS_SPEC_ENV}
                    OUT SWIT_NATS_SUITES)
if(BUSTED)
  set_tests_properties(conformance.nats_js ${SWIT_NATS_SUITES} PROPERTIES
                       FIXTURES_REQUIRED nats)
endif()

add_test(NAME nats.bench.smoke
         COMMAND sh -c "exec \"$0\" --url \"$(cat \"$1\")\" --messages 20000 --repeat 1"
                 $<TARGET_FILE:bench_nats> ${SWIT_NATS_DIR}/url)
set_tests_properties(nats.bench.smoke PROPERTIES TIMEOUT 120
                     FIXTURES_REQUIRED nats)
