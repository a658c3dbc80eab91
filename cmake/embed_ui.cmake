# embed_ui.cmake -- turns the files under ui/ into a C source (the agent serves them from
# memory, so the binary needs no files beside it). Run at build time by CMakeLists.txt:
#   cmake -DUI_DIR=<repo>/ui -DOUT=<build>/ui_assets.c -P embed_ui.cmake
# Each file becomes a byte array (plus a NUL so an empty file is still a valid array) and a
# row {path relative to ui/, data, length, ETag} of api_ui_assets (src/api/ui.h).
file(GLOB_RECURSE files RELATIVE ${UI_DIR} ${UI_DIR}/*)
list(SORT files)
set(out "/* Generated from ui/ by cmake/embed_ui.cmake at build time: do not edit. */\n")
string(APPEND out "#include \"api/ui.h\"\n\n")
set(rows "")
set(i 0)
foreach(f ${files})
  # dot files (editor swap files, .gitkeep) are not part of the UI
  get_filename_component(base ${f} NAME)
  if(base MATCHES "^\\.")
    continue()
  endif()
  if(NOT f MATCHES "^[A-Za-z0-9_./-]+$")
    message(FATAL_ERROR "ui/${f}: file names may use only letters, digits and _ . / -")
  endif()
  file(READ ${UI_DIR}/${f} hex HEX)
  string(LENGTH "${hex}" hexlen)
  math(EXPR len "${hexlen} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  # a line break after each newline byte: the generated lines follow the file's own
  string(REPLACE "0x0a," "0x0a,\n  " bytes "${bytes}")
  string(APPEND out "static const unsigned char ui_file_${i}[] = {\n  ${bytes}0x00};\n")
  # the ETag: a content hash, so a browser revalidating an unchanged file gets a 304
  string(SHA256 sum "${hex}")
  string(SUBSTRING ${sum} 0 20 sum)
  string(APPEND rows "  {\"${f}\", ui_file_${i}, ${len}, \"\\\"${sum}\\\"\"},\n")
  math(EXPR i "${i} + 1")
endforeach()
if(i EQUAL 0)
  message(FATAL_ERROR "no files under ${UI_DIR}")
endif()
string(APPEND out "\nconst struct api_ui_asset api_ui_assets[] = {\n${rows}};\n")
string(APPEND out "const size_t api_ui_assets_count = ${i};\n")
file(WRITE ${OUT} "${out}")
