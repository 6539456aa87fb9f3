# Compiler flags shared by every target: the NKC_SANITIZE option (applied here to all
# that is compiled and linked after this file is included) and the warning set, which
# each target takes with nkc_target_warnings(<target>).

set(NKC_WARNING_FLAGS -Wall -Wextra -Wpedantic -Wshadow -Wformat=2 -Wvla
    $<$<COMPILE_LANGUAGE:C>:-Wstrict-prototypes -Wmissing-prototypes>)

# The project's warnings on <target>, errors too when NKC_WERROR is on.
function(nkc_target_warnings target)
  target_compile_options(${target} PRIVATE ${NKC_WARNING_FLAGS} $<$<BOOL:${NKC_WERROR}>:-Werror>)
endfunction()

if(NKC_SANITIZE)
  foreach(sanitizer IN LISTS NKC_SANITIZE)
    if(NOT sanitizer MATCHES "^(address|undefined|thread)$")
      message(FATAL_ERROR "NKC_SANITIZE: unknown sanitizer '${sanitizer}' "
                          "(use \"address;undefined\" or \"thread\")")
    endif()
  endforeach()
  if("thread" IN_LIST NKC_SANITIZE AND "address" IN_LIST NKC_SANITIZE)
    message(FATAL_ERROR "NKC_SANITIZE: thread and address cannot be combined")
  endif()
  list(JOIN NKC_SANITIZE "," nkc_sanitizers)
  set(nkc_sanitize_flags -fsanitize=${nkc_sanitizers} -fno-omit-frame-pointer)
  if("undefined" IN_LIST NKC_SANITIZE)
    # Undefined behaviour fails the run instead of printing and going on.
    list(APPEND nkc_sanitize_flags -fno-sanitize-recover=all)
  endif()
  add_compile_options(${nkc_sanitize_flags})
  add_link_options(${nkc_sanitize_flags})
  message(STATUS "nakkucache: sanitizers: ${nkc_sanitizers}")
endif()
