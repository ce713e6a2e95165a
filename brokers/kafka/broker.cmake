# brokers/kafka/broker.cmake - the Kafka adapter (librdkafka), its mock
# cluster tool, its test fixture, its suites and its benchmark. Included by
# the top-level CMakeLists.txt when "kafka" is in SWIT_BROKERS.
#
# Tests (ctest -R kafka):
#   kafka.mock.start / kafka.mock.stop   the fixture: swit-kafka-mock with
#                       3 brokers, state in <build>/kafka-mock (the
#                       bootstrap string in <build>/kafka-mock/bootstrap)
#   conformance.kafka   the shared conformance suite (spec/CMakeLists.txt)
#   kafka.<suite>       spec/kafka/*_spec.lua: interop with kcat, faults,
#                       commit correctness, bad input, a consumer group
#                       shared by two swit processes (the fault suite
#                       starts private mock clusters so a broker taken down
#                       never disturbs the others)
#   kafka.bench.smoke   bench/kafka with a small message count
pkg_check_modules(RDKAFKA REQUIRED IMPORTED_TARGET rdkafka)

list(APPEND SWIT_BROKER_SOURCES
  brokers/kafka/kafka_broker.c
  brokers/kafka/kafka_conf.c
  brokers/kafka/kafka_group.c
  brokers/kafka/kafka_health.c
  brokers/kafka/kafka_offsets.c
  brokers/kafka/kafka_poll.c
  brokers/kafka/kafka_producer.c
  brokers/kafka/kafka_txn.c)
list(APPEND SWIT_BROKER_INCLUDES ${CMAKE_CURRENT_LIST_DIR})
list(APPEND SWIT_BROKER_LIBS PkgConfig::RDKAFKA)
list(APPEND SWIT_BROKER_PKGS rdkafka)        # for libswit.pc

# The mock cluster tool (rdkafka_mock.h stays here, never in the host).
add_executable(swit-kafka-mock brokers/kafka/mock/swit_kafka_mock.c)
target_link_libraries(swit-kafka-mock PRIVATE PkgConfig::RDKAFKA
                      Threads::Threads)
# Under ThreadSanitizer: the programs with swit in them get
# brokers/kafka/tsan/c11_threads.c (librdkafka's C11 threads made visible
# to TSan; without it librdkafka's threads crash in the TSan runtime); the
# test tools that are plain librdkafka clients (the mock cluster, the
# committed-offsets reader) are built without TSan: nothing of swit in
# them to check.
set(SWIT_KAFKA_TSAN_SOURCES "")
if(SWIT_SANITIZE MATCHES "thread")
  set(SWIT_KAFKA_TSAN_SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/brokers/kafka/tsan/c11_threads.c)
  list(APPEND SWIT_EXE_TSAN_SOURCES ${SWIT_KAFKA_TSAN_SOURCES})
endif()
function(swit_kafka_no_tsan t)
  if(SWIT_SANITIZE MATCHES "thread")
    target_compile_options(${t} PRIVATE -fno-sanitize=thread)
    target_link_options(${t} PRIVATE -fno-sanitize=thread)
  endif()
endfunction()
swit_kafka_no_tsan(swit-kafka-mock)

set(SWIT_KAFKA_SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/scripts/kafka-mock.sh)
set(SWIT_KAFKA_DIR ${CMAKE_BINARY_DIR}/kafka-mock)
add_test(NAME kafka.mock.start
         COMMAND ${SWIT_KAFKA_SCRIPT} start ${SWIT_KAFKA_DIR}
                 $<TARGET_FILE:swit-kafka-mock> -- --brokers 3)
add_test(NAME kafka.mock.stop COMMAND ${SWIT_KAFKA_SCRIPT} stop ${SWIT_KAFKA_DIR})
set_tests_properties(kafka.mock.start PROPERTIES FIXTURES_SETUP kafka TIMEOUT 30)
set_tests_properties(kafka.mock.stop PROPERTIES FIXTURES_CLEANUP kafka TIMEOUT 30)

set(SWIT_TEST_FIXTURES_kafka kafka)
set(SWIT_TEST_ENV_kafka
  SWIT_TEST_KAFKA_BOOTSTRAP_FILE=${SWIT_KAFKA_DIR}/bootstrap
  SWIT_TEST_KAFKA_MOCK=$<TARGET_FILE:swit-kafka-mock>
  SWIT_TEST_KAFKA_SCRIPT=${SWIT_KAFKA_SCRIPT})

# Test tool: reads a group's committed offsets (a second client).
add_executable(kafka_committed spec/kafka/kafka_committed.c)
target_link_libraries(kafka_committed PRIVATE PkgConfig::RDKAFKA)
swit_kafka_no_tsan(kafka_committed)

# The benchmark: raw librdkafka against swit on one mock cluster.
add_executable(bench_kafka bench/kafka/bench_kafka.c ${SWIT_KAFKA_TSAN_SOURCES})
target_link_libraries(bench_kafka PRIVATE swit_shared PkgConfig::RDKAFKA
                      Threads::Threads)
target_compile_definitions(bench_kafka PRIVATE
  BENCH_DIR="${CMAKE_CURRENT_SOURCE_DIR}/bench/kafka")
# ENABLE_EXPORTS: the Lua scripts call bench_kafka_seen through ffi.C.
set_target_properties(bench_kafka PROPERTIES ENABLE_EXPORTS ON
  RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bench/kafka)
add_test(NAME kafka.bench.smoke
         COMMAND bench_kafka --messages 20000 --repeat 1
                 --mock $<TARGET_FILE:swit-kafka-mock>)
set_tests_properties(kafka.bench.smoke PROPERTIES TIMEOUT 300)

set(SWIT_KAFKA_SPEC_ENV
  SWIT_TEST_BIN=$<TARGET_FILE:swit>
  SWIT_TEST_ROOT=${CMAKE_CURRENT_SOURCE_DIR}
  SWIT_TEST_TMP=${CMAKE_BINARY_DIR}/spec/tmp
  SWIT_TEST_KAFKA_COMMITTED=$<TARGET_FILE:kafka_committed>
  SWIT_TEST_KAFKA_DIR=${CMAKE_BINARY_DIR}/kafka-faults
  ${SWIT_TEST_ENV_kafka})
swit_require_tool(kcat)
swit_add_busted_dir(PREFIX kafka DIR ${CMAKE_CURRENT_SOURCE_DIR}/spec/kafka
                    WORKDIR ${CMAKE_CURRENT_SOURCE_DIR} ENV ${SWIT_KAFKA_SPEC_ENV}
                    TIMEOUT 600 OUT SWIT_KAFKA_SUITES)
if(BUSTED)
  set_tests_properties(${SWIT_KAFKA_SUITES} PROPERTIES FIXTURES_REQUIRED kafka)
endif()
