# cmake/busted.cmake - how every Lua suite (busted under LuaJIT) becomes a
# ctest test, and which tools the test run needs. Included by the
# top-level CMakeLists.txt before the brokers' broker.cmake files.
#
# swit_add_busted(NAME name SPEC file WORKDIR dir [ENV ...] [TIMEOUT s])
#   registers `busted --lua=luajit SPEC`. The test fails when busted
#   reports a pending spec or ran no test at all, as well as on a failure
#   or an error: a spec that cannot run here is a red test, never a
#   silent pass.
# swit_add_busted_dir(PREFIX p DIR dir ...)  the same for every
#   <dir>/*_spec.lua, named <p>.<name>
# swit_require_tool(program... [HINT text])
#   the run needs these programs: configure stops if one is missing, and
#   the env.tools test (spec/CMakeLists.txt) checks them again when the
#   suite runs. A build that must run without a tool says so explicitly
#   (-DSWIT_WITH_BUSTED=OFF, -DSWIT_WITH_PROMTOOL=OFF,
#   -DSWIT_WITH_SYSTEMD_ANALYZE=OFF, or fewer SWIT_BROKERS), and the
#   suites that need it are then not registered.
option(SWIT_WITH_BUSTED "Register the Lua suites (busted required)" ON)
option(SWIT_WITH_PROMTOOL "Validate the metrics exposition with promtool" ON)
option(SWIT_WITH_SYSTEMD_ANALYZE "Check the systemd unit (systemd-analyze required)" ON)

function(swit_require_tool)
  cmake_parse_arguments(T "" "HINT" "" ${ARGN})
  foreach(prog IN LISTS T_UNPARSED_ARGUMENTS)
    find_program(SWIT_TOOL_${prog} ${prog})
    if(NOT SWIT_TOOL_${prog})
      message(FATAL_ERROR "${prog} not found: the tests need it. Install it "
              "(scripts/install-deps.sh) or configure without what needs it. "
              "${T_HINT}")
    endif()
    set_property(GLOBAL APPEND PROPERTY SWIT_TEST_TOOLS ${prog})
  endforeach()
endfunction()

if(SWIT_WITH_BUSTED)
  swit_require_tool(busted HINT "(-DSWIT_WITH_BUSTED=OFF drops the Lua suites)")
  # the tools.luacheck suite runs the preset through it
  swit_require_tool(luacheck HINT "(-DSWIT_WITH_BUSTED=OFF drops the Lua suites)")
  set(BUSTED ${SWIT_TOOL_busted})
else()
  message(STATUS "SWIT_WITH_BUSTED=OFF: the Lua suites are not registered")
  set(BUSTED "")
endif()
if(SWIT_WITH_PROMTOOL)
  swit_require_tool(promtool HINT "(-DSWIT_WITH_PROMTOOL=OFF skips the exposition check)")
endif()
if(SWIT_WITH_SYSTEMD_ANALYZE)
  swit_require_tool(systemd-analyze
    HINT "(Debian package systemd, or -DSWIT_WITH_SYSTEMD_ANALYZE=OFF drops packaging.systemd)")
endif()

function(swit_add_busted)
  cmake_parse_arguments(B "" "NAME;SPEC;WORKDIR;TIMEOUT" "ENV" ${ARGN})
  if(NOT BUSTED)
    return()
  endif()
  add_test(NAME ${B_NAME}
           COMMAND ${BUSTED} --lua=luajit -o utfTerminal ${B_SPEC}
           WORKING_DIRECTORY ${B_WORKDIR})
  if(NOT B_TIMEOUT)
    set(B_TIMEOUT 300)
  endif()
  # utfTerminal's summary: "N successes / N failures / N errors / N pending"
  set_tests_properties(${B_NAME} PROPERTIES TIMEOUT ${B_TIMEOUT}
    ENVIRONMENT "${B_ENV}"
    FAIL_REGULAR_EXPRESSION "[0-9]+ errors? / [1-9][0-9]* pending;(^|[^0-9])0 successes /")
endfunction()

# swit_add_busted_dir(PREFIX p DIR dir WORKDIR w [ENV ...] [TIMEOUT s]
#                     [OUT var])
#   one test <p>.<name> per <dir>/<name>_spec.lua; OUT gets the names
#   (none when the build is configured without busted).
function(swit_add_busted_dir)
  cmake_parse_arguments(D "" "PREFIX;DIR;WORKDIR;TIMEOUT;OUT" "ENV" ${ARGN})
  file(GLOB specs CONFIGURE_DEPENDS ${D_DIR}/*_spec.lua)
  set(names "")
  if(NOT BUSTED)        # no suites registered: OUT stays empty
    set(specs "")
  endif()
  foreach(spec IN LISTS specs)
    get_filename_component(name ${spec} NAME_WE)
    string(REGEX REPLACE "_spec$" "" name ${name})
    swit_add_busted(NAME ${D_PREFIX}.${name} SPEC ${spec} WORKDIR ${D_WORKDIR}
                    TIMEOUT ${D_TIMEOUT} ENV ${D_ENV})
    list(APPEND names ${D_PREFIX}.${name})
  endforeach()
  if(D_OUT)
    set(${D_OUT} ${names} PARENT_SCOPE)
  endif()
endfunction()
