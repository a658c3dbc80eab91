/* err.c -- the message table for err.h's codes. */
#include "lib/err.h"

const char *cc_strerror(int code)
{
  switch (code) {
    case CC_OK: return "ok";
#define CC_ERR_CASE(name, num, msg) case num: return msg;
    CC_ERRORS(CC_ERR_CASE)
#undef CC_ERR_CASE
  }
  return "unknown error";
}
