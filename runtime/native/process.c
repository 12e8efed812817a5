// Process hardening syscalls Node does not expose (membrane_process addon).
//
// Why this exists: a key-holding Membrane process must never write a core dump
// (a SIGSEGV with `ulimit -c unlimited` wrote every DEK to disk) and must not be
// ptrace-attachable by same-uid processes: prctl(PR_SET_DUMPABLE, 0) does both,
// and RLIMIT_CORE 0 is inherited by the application so its cores cannot carry
// plaintext either. The audit lock needs a lock the kernel drops with the process
// (flock on an open descriptor), which survives zombies and PID reuse where a
// pid file + kill(pid, 0) does not. And explicit_bzero gives a zeroing the
// compiler cannot elide, for buffers JavaScript hands us. cloexecAll marks every
// descriptor above stdio close-on-exec before the application is spawned: libfuse
// opens /dev/fuse without O_CLOEXEC, and an application holding it can read and
// answer the volume's FUSE requests itself (and, if the runtime is killed, keeps
// the connection alive so its own writes hang in D state forever).
#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <stdio.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#define CHECK(call)                                                  \
  do {                                                               \
    if ((call) != napi_ok) {                                         \
      napi_throw_error(env, "MEMBRANE_NATIVE", "N-API call failed"); \
      return NULL;                                                   \
    }                                                                \
  } while (0)

static napi_value throw_errno(napi_env env, const char *syscall, int err) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s failed: %s", syscall, strerror(err));
  napi_value m, code, e, no;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_string_utf8(env, "MEMBRANE_PROCESS_SYSCALL", NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, m, &e);
  napi_create_int32(env, err, &no);
  napi_set_named_property(env, e, "errno", no);
  napi_throw(env, e);
  return NULL;
}

static napi_value make_bool(napi_env env, int v) {
  napi_value r;
  napi_get_boolean(env, v != 0, &r);
  return r;
}

// disableCoreDumps(): PR_SET_DUMPABLE 0 and RLIMIT_CORE {0, 0}.
static napi_value disable_core_dumps(napi_env env, napi_callback_info info) {
  (void)info;
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return throw_errno(env, "prctl(PR_SET_DUMPABLE)", errno);
  struct rlimit rl = {0, 0};
  if (setrlimit(RLIMIT_CORE, &rl) != 0) return throw_errno(env, "setrlimit(RLIMIT_CORE)", errno);
  return NULL;
}

// isDumpable() -> boolean
static napi_value is_dumpable(napi_env env, napi_callback_info info) {
  (void)info;
  int r = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
  if (r < 0) return throw_errno(env, "prctl(PR_GET_DUMPABLE)", errno);
  return make_bool(env, r);
}

// flock(fd, exclusive, nonBlocking) -> boolean (false: held elsewhere, only when non-blocking)
static napi_value do_flock(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd = -1;
  bool ex = true, nb = true;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "MEMBRANE_NATIVE", "flock: fd must be a non-negative integer");
    return NULL;
  }
  if (argc >= 2) napi_get_value_bool(env, argv[1], &ex);
  if (argc >= 3) napi_get_value_bool(env, argv[2], &nb);
  int op = (ex ? LOCK_EX : LOCK_SH) | (nb ? LOCK_NB : 0);
  for (;;) {
    if (flock(fd, op) == 0) return make_bool(env, 1);
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) return make_bool(env, 0);
    return throw_errno(env, "flock", errno);
  }
}

// zero(u8: Uint8Array): explicit_bzero of its bytes (a write the compiler keeps).
static napi_value zero(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  bool is_ta = false;
  if (argc < 1 || napi_is_typedarray(env, argv[0], &is_ta) != napi_ok || !is_ta) {
    napi_throw_type_error(env, "MEMBRANE_NATIVE", "zero: expected a Uint8Array");
    return NULL;
  }
  napi_typedarray_type t;
  size_t len, off;
  void *data;
  napi_value ab;
  CHECK(napi_get_typedarray_info(env, argv[0], &t, &len, &data, &ab, &off));
  if (t != napi_uint8_array) {
    napi_throw_type_error(env, "MEMBRANE_NATIVE", "zero: expected a Uint8Array");
    return NULL;
  }
  if (len > 0) explicit_bzero(data, len);
  return NULL;
}

// cloexecAll(): FD_CLOEXEC on every open descriptor > 2; returns how many it had to set.
static napi_value cloexec_all(napi_env env, napi_callback_info info) {
  (void)info;
  DIR *d = opendir("/proc/self/fd");
  if (!d) return throw_errno(env, "opendir /proc/self/fd", errno);
  int own = dirfd(d);
  int changed = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    int fd = atoi(e->d_name);
    if (fd <= 2 || fd == own) continue;
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0 || (flags & FD_CLOEXEC)) continue;
    if (fcntl(fd, F_SETFD, flags | FD_CLOEXEC) == 0) changed++;
  }
  closedir(d);
  napi_value out;
  CHECK(napi_create_int32(env, changed, &out));
  return out;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"disableCoreDumps", NULL, disable_core_dumps, NULL, NULL, NULL, napi_default, NULL},
      {"isDumpable", NULL, is_dumpable, NULL, NULL, NULL, napi_default, NULL},
      {"flock", NULL, do_flock, NULL, NULL, NULL, napi_default, NULL},
      {"zero", NULL, zero, NULL, NULL, NULL, napi_default, NULL},
      {"cloexecAll", NULL, cloexec_all, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}
