# The deployable runtime alone (IB_RUNTIME_ONLY, the default when cross-compiling):
# libinferbooster_runtime.a (core, target description and detection, the artifact
# runtime) and the inferbooster-run program, needing libc, libm, libpthread and libdl
# only. No protobuf, OpenSSL, HTTP or JSON library, no compiler: what a device needs to
# run an artifact built elsewhere.
find_package(Threads REQUIRED)
file(GLOB IB_RUNTIME_SOURCES CONFIGURE_DEPENDS src/core/*.c)
list(APPEND IB_RUNTIME_SOURCES src/target/cpu_detect.c src/target/gpu_detect.c src/target/target_desc.c
     src/runtime/runtime.c)
add_library(inferbooster_runtime STATIC ${IB_RUNTIME_SOURCES})
target_include_directories(inferbooster_runtime
  PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include ${CMAKE_CURRENT_SOURCE_DIR}/src)
target_compile_options(inferbooster_runtime PRIVATE ${IB_WARNINGS})
target_compile_definitions(inferbooster_runtime PRIVATE _GNU_SOURCE)
target_link_libraries(inferbooster_runtime PUBLIC Threads::Threads m ${CMAKE_DL_LIBS})

add_executable(inferbooster_run src/runner/inferbooster_run.c src/cli/npy.c)
set_target_properties(inferbooster_run PROPERTIES OUTPUT_NAME inferbooster-run
                      RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
target_compile_options(inferbooster_run PRIVATE ${IB_WARNINGS})
target_compile_definitions(inferbooster_run PRIVATE _GNU_SOURCE)
target_link_libraries(inferbooster_run PRIVATE inferbooster_runtime)
if(CMAKE_BUILD_TYPE STREQUAL "Release" OR CMAKE_BUILD_TYPE STREQUAL "MinSizeRel")
  target_link_options(inferbooster_run PRIVATE -s)  # deployed: no symbols
endif()

# The measurement agent a tuner on another machine sends candidates to (tune --agent).
add_executable(inferbooster_agent src/runner/inferbooster_agent.c src/tune/measure_job.c)
set_target_properties(inferbooster_agent PROPERTIES OUTPUT_NAME inferbooster-agent
                      RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
target_compile_options(inferbooster_agent PRIVATE ${IB_WARNINGS})
target_compile_definitions(inferbooster_agent PRIVATE _GNU_SOURCE)
target_link_libraries(inferbooster_agent PRIVATE inferbooster_runtime)
