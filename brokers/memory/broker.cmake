# brokers/memory/broker.cmake - the embedded in-memory broker (no
# dependencies). Included by the top-level CMakeLists.txt.
list(APPEND SWIT_BROKER_SOURCES
  brokers/memory/memory_broker.c
  brokers/memory/memory_delivery.c
  brokers/memory/memory_topic.c)
list(APPEND SWIT_BROKER_INCLUDES ${CMAKE_CURRENT_LIST_DIR})
