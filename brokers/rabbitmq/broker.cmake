# brokers/rabbitmq/broker.cmake - the RabbitMQ adapter (rabbitmq-c), its
# test servers, suites and benchmark. Included by the top-level
# CMakeLists.txt when "rabbitmq" is in SWIT_BROKERS.
#
# Two private RabbitMQ nodes (scripts/rabbitmq.sh), state under the build
# directory, 127.0.0.1 only, every port (AMQP, Erlang distribution, epmd,
# management HTTP) a free one probed when the fixture starts, so two build
# trees test at once; the specs read the URLs from <run dir>/url and /http:
#   rabbitmq        AMQP and management HTTP: conformance, interop,
#                   competing consumers, bad input, benchmark smoke run
#   rabbitmq_fault  AMQP: the fault suites, which restart the server
#                   and close connections, so they get a node of their own
#                   and run one at a time (RESOURCE_LOCK).
pkg_check_modules(RABBITMQ REQUIRED IMPORTED_TARGET librabbitmq)

list(APPEND SWIT_BROKER_SOURCES
  brokers/rabbitmq/rabbitmq_broker.c
  brokers/rabbitmq/rabbitmq_conn.c
  brokers/rabbitmq/rabbitmq_io.c
  brokers/rabbitmq/rabbitmq_msg.c
  brokers/rabbitmq/rabbitmq_publish.c)
list(APPEND SWIT_BROKER_INCLUDES ${CMAKE_CURRENT_LIST_DIR})
list(APPEND SWIT_BROKER_LIBS PkgConfig::RABBITMQ)
list(APPEND SWIT_BROKER_PKGS librabbitmq)    # for libswit.pc

set(RMQ_SCRIPT ${PROJECT_SOURCE_DIR}/scripts/rabbitmq.sh)
set(RMQ_RUN ${CMAKE_BINARY_DIR}/rabbitmq-run)
set(RMQ_FAULT_RUN ${CMAKE_BINARY_DIR}/rabbitmq-fault-run)

# --- server fixtures ------------------------------------------------------
add_test(NAME rabbitmq.server.start
         COMMAND ${RMQ_SCRIPT} start ${RMQ_RUN} auto auto auto auto)
add_test(NAME rabbitmq.server.stop COMMAND ${RMQ_SCRIPT} stop ${RMQ_RUN})
set_tests_properties(rabbitmq.server.start PROPERTIES
                     FIXTURES_SETUP rabbitmq TIMEOUT 180)
set_tests_properties(rabbitmq.server.stop PROPERTIES
                     FIXTURES_CLEANUP rabbitmq TIMEOUT 120)
add_test(NAME rabbitmq.fault_server.start
         COMMAND ${RMQ_SCRIPT} start ${RMQ_FAULT_RUN} auto auto auto)
add_test(NAME rabbitmq.fault_server.stop COMMAND ${RMQ_SCRIPT} stop ${RMQ_FAULT_RUN})
set_tests_properties(rabbitmq.fault_server.start PROPERTIES
                     FIXTURES_SETUP rabbitmq_fault TIMEOUT 180)
set_tests_properties(rabbitmq.fault_server.stop PROPERTIES
                     FIXTURES_CLEANUP rabbitmq_fault TIMEOUT 120)

# What the conformance suite (spec/CMakeLists.txt) runs with.
set(SWIT_TEST_ENV_rabbitmq SWIT_TEST_RABBITMQ_RUN=${RMQ_RUN})
set(SWIT_TEST_FIXTURES_rabbitmq rabbitmq)

# --- suites (spec/rabbitmq/*_spec.lua) -----------------------------------
swit_require_tool(amqp-publish amqp-consume curl)
set(RMQ_SPEC_ENV
  SWIT_TEST_BIN=$<TARGET_FILE:swit>
  SWIT_TEST_ROOT=${PROJECT_SOURCE_DIR}
  SWIT_TEST_TMP=${CMAKE_BINARY_DIR}/spec/tmp
  SWIT_TEST_RABBITMQ_SCRIPT=${RMQ_SCRIPT}
  SWIT_TEST_RABBITMQ_RUN=${RMQ_RUN}
  SWIT_TEST_RABBITMQ_FAULT_RUN=${RMQ_FAULT_RUN})
swit_add_busted_dir(PREFIX rabbitmq DIR ${PROJECT_SOURCE_DIR}/spec/rabbitmq
                    WORKDIR ${PROJECT_SOURCE_DIR} ENV ${RMQ_SPEC_ENV}
                    TIMEOUT 600 OUT RMQ_SUITES)
foreach(suite IN LISTS RMQ_SUITES)
  if(suite MATCHES "^rabbitmq[.]fault")
    set_tests_properties(${suite} PROPERTIES FIXTURES_REQUIRED rabbitmq_fault
                         RESOURCE_LOCK rabbitmq_fault)
  else()
    set_tests_properties(${suite} PROPERTIES FIXTURES_REQUIRED rabbitmq)
  endif()
endforeach()

# The adapter's ops driven directly (broker.h contract), on the fault
# server: one case drops its connections.
add_executable(test_rabbitmq_adapter
  ${PROJECT_SOURCE_DIR}/spec/rabbitmq/test_rabbitmq_adapter.c)
target_include_directories(test_rabbitmq_adapter PRIVATE
  ${PROJECT_SOURCE_DIR}/host ${PROJECT_SOURCE_DIR}/bindings
  ${PROJECT_SOURCE_DIR}/host/include ${PROJECT_SOURCE_DIR}/spec/c
  ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(test_rabbitmq_adapter PRIVATE swit_obj)
add_test(NAME rabbitmq.fault_adapter
         COMMAND sh -c "exec \"$0\" \"$(cat \"$2/url\")\" \"$1\" \"$2\""
                 $<TARGET_FILE:test_rabbitmq_adapter> ${RMQ_SCRIPT} ${RMQ_FAULT_RUN})
set_tests_properties(rabbitmq.fault_adapter PROPERTIES TIMEOUT 300
  FIXTURES_REQUIRED rabbitmq_fault RESOURCE_LOCK rabbitmq_fault)

# --- benchmark (bench/rabbitmq) -------------------------------------------
add_executable(bench_rabbitmq ${PROJECT_SOURCE_DIR}/bench/rabbitmq/bench_rabbitmq.c)
target_link_libraries(bench_rabbitmq PRIVATE swit_shared PkgConfig::RABBITMQ
                      Threads::Threads)
target_compile_definitions(bench_rabbitmq PRIVATE
  BENCH_DIR="${PROJECT_SOURCE_DIR}/bench/rabbitmq")
# the Lua handlers call back into the program through ffi.C
set_target_properties(bench_rabbitmq PROPERTIES ENABLE_EXPORTS ON)
add_test(NAME rabbitmq.bench.smoke
         COMMAND sh -c "exec \"$0\" --url \"$(cat \"$1\")\" --messages 2000 --repeat 1"
                 $<TARGET_FILE:bench_rabbitmq> ${RMQ_RUN}/url)
set_tests_properties(rabbitmq.bench.smoke PROPERTIES
                     FIXTURES_REQUIRED rabbitmq TIMEOUT 300)
