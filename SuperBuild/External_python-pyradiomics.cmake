#-----------------------------------------------------------------------------
# pyradiomics 3.0.1 for Slicer's Python, built by the project's one recipe
# (tools/pyradiomics_wheel.py, the same script `make install` runs): it fetches the sdist from
# pip's index, checks its SHA-256, patches the sdist's versioneer for Python >= 3.12, compiles a
# wheel against Slicer's own numpy and pip-installs it (with PyWavelets, pykwalify, six) under
# python_packages_DIR, which the top-level CMakeLists.txt installs into the extension package.
# Same layout as SlicerRadiomics' SuperBuild/External_python-pyradiomics.cmake.
set(proj python-pyradiomics)

set(${proj}_DEPENDENCIES "")

ExternalProject_Include_Dependencies(${proj} PROJECT_VAR proj DEPENDS_VAR ${proj}_DEPENDENCIES)

if(${CMAKE_PROJECT_NAME}_USE_SYSTEM_${proj})
  ExternalProject_FindPythonPackage(
    MODULE_NAME "radiomics"
    REQUIRED
    )
endif()

if(NOT DEFINED ${CMAKE_PROJECT_NAME}_USE_SYSTEM_${proj})
  set(${CMAKE_PROJECT_NAME}_USE_SYSTEM_${proj} ${Slicer_USE_SYSTEM_python})
endif()

if(NOT ${CMAKE_PROJECT_NAME}_USE_SYSTEM_${proj})

  set(wrapper_script)
  if(MSVC)
    find_package(Vcvars REQUIRED)
    set(wrapper_script ${Vcvars_WRAPPER_BATCH_FILE})
  endif()

  # Alternative python prefix for installing extension python packages
  set(python_packages_DIR "${CMAKE_BINARY_DIR}/python-packages-install")
  file(TO_NATIVE_PATH ${python_packages_DIR} python_packages_DIR_NATIVE_DIR)

  set(_recipe "${CMAKE_CURRENT_SOURCE_DIR}/tools/pyradiomics_wheel.py")
  set(_work_dir "${CMAKE_BINARY_DIR}/${proj}")

  # --no-user-cache: a factory build never reuses a wheel from another build.
  # --build-requirements-dir: versioneer/setuptools/wheel stay out of Slicer's Python.
  set(_install_pyradiomics COMMAND ${CMAKE_COMMAND}
      -E env
        PYTHONNOUSERSITE=1
        CC=${CMAKE_C_COMPILER}
      ${wrapper_script} ${PYTHON_EXECUTABLE} ${_recipe}
        --cache ${_work_dir}/cache
        --no-user-cache
        --build-requirements-dir ${_work_dir}/build-requirements
        --install
        --prefix ${python_packages_DIR_NATIVE_DIR}
    )

  ExternalProject_Add(${proj}
    ${${proj}_EP_ARGS}
    DOWNLOAD_COMMAND ""
    SOURCE_DIR ${_work_dir}
    BUILD_IN_SOURCE 1
    CONFIGURE_COMMAND ""
    BUILD_COMMAND ""
    INSTALL_COMMAND ${CMAKE_COMMAND} -E echo_append ""
    ${_install_pyradiomics}
    DEPENDS
      ${${proj}_DEPENDENCIES}
    )

  ExternalProject_GenerateProjectDescription_Step(${proj}
    VERSION "3.0.1"
    )

  #-----------------------------------------------------------------------------
  # Launcher setting specific to build tree (the self-test run by ctest imports radiomics)
  set(${proj}_PYTHONPATH_LAUNCHER_BUILD
    ${python_packages_DIR}/${PYTHON_STDLIB_SUBDIR}
    ${python_packages_DIR}/${PYTHON_STDLIB_SUBDIR}/lib-dynload
    ${python_packages_DIR}/${PYTHON_SITE_PACKAGES_SUBDIR}
    )
  mark_as_superbuild(
    VARS ${proj}_PYTHONPATH_LAUNCHER_BUILD
    LABELS "PYTHONPATH_LAUNCHER_BUILD"
    )

  mark_as_superbuild(python_packages_DIR:PATH)

else()
  ExternalProject_Add_Empty(${proj} DEPENDS ${${proj}_DEPENDENCIES})
endif()
