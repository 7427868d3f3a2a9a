# liblazyllm_edge: the C API as a shared library exporting only le_* (visibility + version script),
# installed with its header and a relocatable CMake package: find_package(lazyllm_edge) then
# target_link_libraries(app lazyllm_edge::lazyllm_edge).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# Inside the wheel everything goes under the package directory: lazyllm_edge/{lib,include}.
if(SKBUILD)
  set(LE_LIBDIR lazyllm_edge/lib)
  set(LE_INCLUDEDIR lazyllm_edge/include)
else()
  set(LE_LIBDIR ${CMAKE_INSTALL_LIBDIR})
  set(LE_INCLUDEDIR ${CMAKE_INSTALL_INCLUDEDIR})
endif()
add_library(lazyllm_edge SHARED cpp/api/c_api.cpp cpp/api/c_api_guard.cpp)
add_library(lazyllm_edge::lazyllm_edge ALIAS lazyllm_edge)
target_link_libraries(lazyllm_edge PRIVATE lazyllm_edge_core)
target_include_directories(lazyllm_edge
  PUBLIC $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include> $<INSTALL_INTERFACE:${LE_INCLUDEDIR}>
  PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/include ${CMAKE_CURRENT_SOURCE_DIR}/cpp)
target_compile_options(lazyllm_edge PRIVATE -Wall -Wextra -Wno-unused-parameter -fvisibility=hidden -fvisibility-inlines-hidden)
# The version script hides everything but le_* (libstdc++ template instantiations would leak otherwise)
# and tags the symbols with the ABI major version.
set(LAZYLLM_EDGE_EXPORTS_MAP ${CMAKE_CURRENT_SOURCE_DIR}/cpp/api/exports.map)
target_link_options(lazyllm_edge PRIVATE "LINKER:--version-script=${LAZYLLM_EDGE_EXPORTS_MAP}" "LINKER:--no-undefined")
set_target_properties(lazyllm_edge PROPERTIES
  VERSION ${PROJECT_VERSION} SOVERSION 1 LINK_DEPENDS ${LAZYLLM_EDGE_EXPORTS_MAP}
  C_VISIBILITY_PRESET hidden CXX_VISIBILITY_PRESET hidden)

set(LE_CMAKEDIR ${LE_LIBDIR}/cmake/lazyllm_edge)

install(TARGETS lazyllm_edge EXPORT lazyllm_edgeTargets
  LIBRARY DESTINATION ${LE_LIBDIR} ARCHIVE DESTINATION ${LE_LIBDIR} RUNTIME DESTINATION ${LE_LIBDIR}
  INCLUDES DESTINATION ${LE_INCLUDEDIR})
install(FILES include/lazyllm_edge/lazyllm_edge.h DESTINATION ${LE_INCLUDEDIR}/lazyllm_edge)
install(EXPORT lazyllm_edgeTargets NAMESPACE lazyllm_edge:: DESTINATION ${LE_CMAKEDIR})
configure_package_config_file(cmake/lazyllm_edgeConfig.cmake.in ${CMAKE_CURRENT_BINARY_DIR}/lazyllm_edgeConfig.cmake
  INSTALL_DESTINATION ${LE_CMAKEDIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/lazyllm_edgeConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/lazyllm_edgeConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/lazyllm_edgeConfigVersion.cmake
  DESTINATION ${LE_CMAKEDIR})
