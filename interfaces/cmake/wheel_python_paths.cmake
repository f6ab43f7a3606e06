# Injected by interfaces/build.sh with -DCMAKE_PROJECT_INCLUDE=<this file>; never needed with a
# ROS distribution.
#
# The ROS 2 PyPI wheels were built on manylinux: their exported CMake targets
# (<pkg>::<pkg>__rosidl_generator_py) name that machine's Python include dirs, e.g.
# /opt/python/cp311-cp311/include/python3.11 and .../site-packages/numpy/_core/include.
# CMake refuses to generate with an imported target that names a missing include dir.
# At the end of the top-level CMakeLists.txt (after every find_package) this rewrites such
# entries, in this build only, to the include dirs of ${Python3_EXECUTABLE}; the installed
# files in the venv are left untouched.

function(_dsg_fix_wheel_python_paths)
  if(NOT Python3_EXECUTABLE)
    message(FATAL_ERROR "wheel_python_paths.cmake: pass -DPython3_EXECUTABLE=<venv python>")
  endif()
  execute_process(
    COMMAND "${Python3_EXECUTABLE}" -c
      "import sysconfig, numpy; print(sysconfig.get_paths()['include']); print(numpy.get_include())"
    OUTPUT_VARIABLE _out OUTPUT_STRIP_TRAILING_WHITESPACE
    RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "wheel_python_paths.cmake: ${Python3_EXECUTABLE} could not report its include dirs")
  endif()
  string(REPLACE "\n" ";" _out "${_out}")
  list(GET _out 0 _py_inc)
  list(GET _out 1 _np_inc)

  get_directory_property(_targets DIRECTORY "${CMAKE_SOURCE_DIR}" IMPORTED_TARGETS)
  set(_fixed 0)
  foreach(_t ${_targets})
    get_target_property(_dirs ${_t} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_new "")
    set(_changed FALSE)
    foreach(_d ${_dirs})
      if(NOT EXISTS "${_d}" AND _d MATCHES "^/opt/python/[^/]+/")
        if(_d MATCHES "/numpy/(_core/|core/)?include$")
          set(_d "${_np_inc}")
        elseif(_d MATCHES "/include/python3[.0-9]*t?$")
          set(_d "${_py_inc}")
        endif()
        set(_changed TRUE)
      endif()
      list(APPEND _new "${_d}")
    endforeach()
    if(_changed)
      list(REMOVE_DUPLICATES _new)
      set_target_properties(${_t} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_new}")
      math(EXPR _fixed "${_fixed} + 1")
    endif()
  endforeach()
  message(STATUS "wheel_python_paths: ${_fixed} imported targets pointed at ${_py_inc}")
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _dsg_fix_wheel_python_paths)
