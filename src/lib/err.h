/* err.h -- Concord's error codes: 0 for success, a negative CC_E* code otherwise, with one
 * table of messages (as libuv and canonical raft do). Functions that can add context take a
 * caller's `char *errbuf, size_t errlen` and write a full sentence there. */
#ifndef CONCORD_LIB_ERR_H
#define CONCORD_LIB_ERR_H

#define CC_ERRORS(X)                                                  \
  X(EINVAL, -1, "invalid argument")                                   \
  X(ENOTFOUND, -2, "not found")                                       \
  X(ENOTLEADER, -3, "No cluster leader")                              \
  X(ETOOBIG, -4, "too large")                                         \
  X(EIO, -5, "I/O error")                                             \
  X(ECANCELED, -6, "canceled")                                        \
  X(ESHUTDOWN, -7, "shutting down")                                   \
  X(ECORRUPT, -8, "corrupt data")                                     \
  X(EPERM, -9, "Permission denied")                                   \
  X(ECONFLICT, -10, "conflict")                                       \
  X(ETIMEOUT, -11, "timed out")                                       \
  X(ENOCONN, -12, "could not connect")

enum cc_err {
  CC_OK = 0,
#define CC_ERR_ENUM(name, code, msg) CC_##name = code,
  CC_ERRORS(CC_ERR_ENUM)
#undef CC_ERR_ENUM
};

/* The message for a code; never NULL. */
const char *cc_strerror(int code);

#endif
