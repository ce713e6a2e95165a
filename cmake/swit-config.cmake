# swit-config.cmake - find_package(swit) for embedders: the imported
# target swit::swit (libswit.so with swit.h's include directory).
# Installed with swit-targets.cmake and swit-config-version.cmake by
# `make install`; relocatable (paths are relative to this file).
include(${CMAKE_CURRENT_LIST_DIR}/swit-targets.cmake)
