#
# NmqOutbox.cmake - builds NanoMQ's MQTT bridge with nmq-outbox, the durable SQLite outbox.
#
# The NanoMQ patch copies this file to cmake/NmqOutbox.cmake and includes it from the top-level
# CMakeLists.txt before add_subdirectory(nng), so that the define and the include directory
# reach both NanoNNG (mqtt_client.c) and NanoMQ (bridge.c, broker.c). Nothing here needs more
# than the CMake 2.8.12 that NanoMQ supports: an IMPORTED library, no Corrosion, no cargo call.
#
#   -DNMQ_OUTBOX=ON                 enable; OFF (the default) leaves the stock build untouched
#   -DNMQ_OUTBOX_DIR=<dir>          an nmq-outbox checkout: <dir>/include and the built library
#   -DNMQ_OUTBOX_INCLUDE_DIR=<dir>  default <NMQ_OUTBOX_DIR>/include
#   -DNMQ_OUTBOX_LIBRARY=<file>     default <NMQ_OUTBOX_DIR>/target/nanomq/libnmq_outbox_nanomq.a,
#                                   the archive made by nanomq_patch/make-archive.sh (its only
#                                   global definitions are nmq_outbox_*: NanoNNG's own SQLite
#                                   and ours never meet at link time)
#
# The library is linked to the nng target (by the NanoNNG patch, src/mqtt/protocol/mqtt/
# CMakeLists.txt) and to the nanomq target (by the NanoMQ patch, nanomq/CMakeLists.txt). It
# calls back into nng's public API (nng_msg_*, nng_aio_*, nng_send_aio), hence "nng" in its
# link interface: the link line becomes libnng.a libnmq_outbox_nanomq.a libnng.a ...
#
option(NMQ_OUTBOX "Durable SQLite outbox for MQTT bridges (nmq-outbox)" OFF)

if (NMQ_OUTBOX)
  set(NMQ_OUTBOX_DIR "" CACHE PATH "nmq-outbox checkout (include/ and target/)")
  set(NMQ_OUTBOX_INCLUDE_DIR "${NMQ_OUTBOX_DIR}/include"
      CACHE PATH "directory of nmq_outbox.h and nmq_outbox_nng.h")
  set(NMQ_OUTBOX_LIBRARY "${NMQ_OUTBOX_DIR}/target/nanomq/libnmq_outbox_nanomq.a"
      CACHE FILEPATH "the nmq-outbox library to link (see nanomq_patch/make-archive.sh)")

  if (NOT EXISTS "${NMQ_OUTBOX_INCLUDE_DIR}/nmq_outbox_nng.h")
    message(FATAL_ERROR "NMQ_OUTBOX: no nmq_outbox_nng.h in '${NMQ_OUTBOX_INCLUDE_DIR}' "
                        "(set NMQ_OUTBOX_DIR or NMQ_OUTBOX_INCLUDE_DIR)")
  endif ()
  if (NOT EXISTS "${NMQ_OUTBOX_LIBRARY}")
    message(FATAL_ERROR "NMQ_OUTBOX: no library '${NMQ_OUTBOX_LIBRARY}' (run "
                        "'cargo build --release --features nng' and "
                        "'nanomq_patch/make-archive.sh' in the nmq-outbox checkout, "
                        "or set NMQ_OUTBOX_LIBRARY)")
  endif ()

  if (NMQ_OUTBOX_LIBRARY MATCHES "\\.a$")
    add_library(nmq_outbox STATIC IMPORTED)
  else ()
    # A shared build of the library resolves nng_* against the nanomq executable, which then
    # has to export them (see nanomq_patch/README.md, "Clean link").
    add_library(nmq_outbox SHARED IMPORTED)
  endif ()
  # What `cargo rustc -- --print native-static-libs` reports for the Rust standard library.
  set_target_properties(nmq_outbox PROPERTIES
      IMPORTED_LOCATION "${NMQ_OUTBOX_LIBRARY}"
      INTERFACE_LINK_LIBRARIES "nng;gcc_s;util;rt;pthread;m;dl")

  include_directories("${NMQ_OUTBOX_INCLUDE_DIR}")
  add_definitions(-DNMQ_OUTBOX)
  message(STATUS "NMQ_OUTBOX: ${NMQ_OUTBOX_LIBRARY}")
endif ()
