# Injected into llama-cpp-python's build (CMAKE_PROJECT_INCLUDE, see the Makefile): after llama.cpp's
# project() call, skip its `common` utilities and the cpp-httplib they pull in. llama-cpp-python forces
# LLAMA_BUILD_COMMON on, yet installs neither (common is a static library that only the multimodal
# library links, and that is built with LLAVA_BUILD=OFF neither); a normal variable here wins over its cache
# entry in llama.cpp's directory, so the two are never compiled.
if(PROJECT_NAME STREQUAL "llama.cpp")
  set(LLAMA_BUILD_COMMON OFF)
endif()
