// SEV-SNP guest report ioctls, as a tiny N-API addon (node has no ioctl()).
//
// Two kernel ABIs exist in the field:
//  - Linux 6.x upstream sev-guest driver, /dev/sev-guest:
//      SNP_GET_REPORT = _IOWR('S', 0x0, struct snp_guest_request_ioctl)   (32 bytes)
//      req  -> struct snp_report_req  { u8 user_data[64]; u32 vmpl; u8 rsvd[28]; }  (96 bytes)
//      resp -> struct snp_report_resp { u8 data[4000]; }
//  - Linux 5.x out-of-tree AMD driver used by confidential ACI, /dev/sev:
//      SEV_SNP_GUEST_MSG_REPORT = _IOWR('S', 0x1, struct sev_snp_guest_request)   (40 bytes)
//      request = MSG_REPORT_REQ (96 bytes), response = MSG_REPORT_RSP (1280 bytes)
// Both responses hold MSG_REPORT_RSP: u32 status, u32 report_size, 24 reserved
// bytes, then the report at offset 0x20. Parsing that is left to JavaScript so
// it can be unit-tested without hardware; this file only moves bytes.
//
// The structs are declared here (not taken from <linux/sev-guest.h>) because
// the 5.x driver's header never shipped in distributions; layout() exposes
// sizes/offsets/ioctl numbers so tests can check them against the kernel ABI.
// The ioctl is synchronous: it is a single PSP round trip (milliseconds).
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define REPORT_DATA_SIZE 64
#define REPORT_REQ_SIZE 96
#define MSG_REPORT_RSP_SIZE 1280
#define SEV_GUEST_RESP_SIZE 4000
#define MSG_REPORT_REQ 5
#define MSG_REPORT_RSP 6

// ---- Linux 6.x (include/uapi/linux/sev-guest.h) ----
struct snp_report_req6 {
  uint8_t user_data[REPORT_DATA_SIZE];
  uint32_t vmpl;
  uint8_t rsvd[28];
};
struct snp_guest_request_ioctl6 {
  uint8_t msg_version;
  uint64_t req_data;
  uint64_t resp_data;
  uint64_t exitinfo2;  // low 32 bits: firmware error, high 32 bits: VMM error
};
#define SNP_GET_REPORT6 _IOWR('S', 0x0, struct snp_guest_request_ioctl6)

// ---- Linux 5.x AMD sev-snp driver (include/uapi/linux/psp-sev-guest.h) ----
struct sev_snp_guest_request5 {
  uint8_t req_msg_type;
  uint8_t rsp_msg_type;
  uint8_t msg_version;
  uint16_t request_len;
  uint64_t request_uaddr;
  uint16_t response_len;
  uint64_t response_uaddr;
  uint32_t error;  // firmware error code
};
#define SNP_GET_REPORT5 _IOWR('S', 0x1, struct sev_snp_guest_request5)

#define CHECK(call)                                                  \
  do {                                                               \
    if ((call) != napi_ok) {                                         \
      napi_throw_error(env, "MEMBRANE_NATIVE", "N-API call failed"); \
      return NULL;                                                   \
    }                                                                \
  } while (0)

static napi_status set_u32(napi_env env, napi_value obj, const char *name, uint32_t v) {
  napi_value n;
  napi_status s = napi_create_uint32(env, v, &n);
  if (s != napi_ok) return s;
  return napi_set_named_property(env, obj, name, n);
}

static napi_status set_f64(napi_env env, napi_value obj, const char *name, double v) {
  napi_value n;
  napi_status s = napi_create_double(env, v, &n);
  if (s != napi_ok) return s;
  return napi_set_named_property(env, obj, name, n);
}

// layout() -> { v6: {...}, v5: {...} } : what this build hands to the kernel.
static napi_value layout(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out, v6, v5;
  CHECK(napi_create_object(env, &out));
  CHECK(napi_create_object(env, &v6));
  CHECK(napi_create_object(env, &v5));
  CHECK(set_f64(env, v6, "ioctl", (double)(unsigned long)SNP_GET_REPORT6));
  CHECK(set_u32(env, v6, "size", sizeof(struct snp_guest_request_ioctl6)));
  CHECK(set_u32(env, v6, "msgVersion", offsetof(struct snp_guest_request_ioctl6, msg_version)));
  CHECK(set_u32(env, v6, "reqData", offsetof(struct snp_guest_request_ioctl6, req_data)));
  CHECK(set_u32(env, v6, "respData", offsetof(struct snp_guest_request_ioctl6, resp_data)));
  CHECK(set_u32(env, v6, "exitinfo2", offsetof(struct snp_guest_request_ioctl6, exitinfo2)));
  CHECK(set_u32(env, v6, "reqSize", sizeof(struct snp_report_req6)));
  CHECK(set_u32(env, v6, "reqVmpl", offsetof(struct snp_report_req6, vmpl)));
  CHECK(set_u32(env, v6, "respSize", SEV_GUEST_RESP_SIZE));
  CHECK(set_f64(env, v5, "ioctl", (double)(unsigned long)SNP_GET_REPORT5));
  CHECK(set_u32(env, v5, "size", sizeof(struct sev_snp_guest_request5)));
  CHECK(set_u32(env, v5, "reqMsgType", offsetof(struct sev_snp_guest_request5, req_msg_type)));
  CHECK(set_u32(env, v5, "rspMsgType", offsetof(struct sev_snp_guest_request5, rsp_msg_type)));
  CHECK(set_u32(env, v5, "msgVersion", offsetof(struct sev_snp_guest_request5, msg_version)));
  CHECK(set_u32(env, v5, "requestLen", offsetof(struct sev_snp_guest_request5, request_len)));
  CHECK(set_u32(env, v5, "requestUaddr", offsetof(struct sev_snp_guest_request5, request_uaddr)));
  CHECK(set_u32(env, v5, "responseLen", offsetof(struct sev_snp_guest_request5, response_len)));
  CHECK(set_u32(env, v5, "responseUaddr", offsetof(struct sev_snp_guest_request5, response_uaddr)));
  CHECK(set_u32(env, v5, "error", offsetof(struct sev_snp_guest_request5, error)));
  CHECK(set_u32(env, v5, "reqSize", REPORT_REQ_SIZE));
  CHECK(set_u32(env, v5, "respSize", MSG_REPORT_RSP_SIZE));
  CHECK(napi_set_named_property(env, out, "v6", v6));
  CHECK(napi_set_named_property(env, out, "v5", v5));
  return out;
}

// Throws Error(message) with .syscall, .errno, .fwError, .vmmError.
static void throw_sys(napi_env env, const char *syscall, int err, uint32_t fw, uint32_t vmm) {
  napi_value msg, code, e;
  const char *text = strerror(err);
  if (napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg) != napi_ok) return;
  if (napi_create_string_utf8(env, "MEMBRANE_SNP_SYSCALL", NAPI_AUTO_LENGTH, &code) != napi_ok) return;
  if (napi_create_error(env, code, msg, &e) != napi_ok) return;
  napi_value s;
  if (napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &s) == napi_ok)
    napi_set_named_property(env, e, "syscall", s);
  set_u32(env, e, "errno", (uint32_t)err);
  set_u32(env, e, "fwError", fw);
  set_u32(env, e, "vmmError", vmm);
  napi_throw(env, e);
}

// getReport(abi: 5|6, device: string, userData: Uint8Array(64), vmpl: number)
//   -> Buffer (the raw MSG_REPORT_RSP container: 4000 bytes for 6, 1280 for 5)
static napi_value get_report(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) {
    napi_throw_type_error(env, "MEMBRANE_NATIVE", "getReport(abi, device, userData, vmpl)");
    return NULL;
  }
  uint32_t abi = 0, vmpl = 0;
  if (napi_get_value_uint32(env, argv[0], &abi) != napi_ok || (abi != 5 && abi != 6)) {
    napi_throw_type_error(env, "MEMBRANE_NATIVE", "getReport: abi must be 5 or 6");
    return NULL;
  }
  char device[256];
  size_t dlen = 0;
  if (napi_get_value_string_utf8(env, argv[1], device, sizeof(device), &dlen) != napi_ok || dlen == 0 ||
      dlen >= sizeof(device) - 1) {
    napi_throw_type_error(env, "MEMBRANE_NATIVE", "getReport: device must be a path string");
    return NULL;
  }
  bool is_ta = false;
  napi_typedarray_type t;
  size_t ulen = 0, off = 0;
  void *udata = NULL;
  napi_value ab;
  if (napi_is_typedarray(env, argv[2], &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, argv[2], &t, &ulen, &udata, &ab, &off) != napi_ok || t != napi_uint8_array ||
      ulen != REPORT_DATA_SIZE) {
    napi_throw_type_error(env, "MEMBRANE_NATIVE", "getReport: userData must be a 64-byte Uint8Array");
    return NULL;
  }
  if (napi_get_value_uint32(env, argv[3], &vmpl) != napi_ok || vmpl > 3) {
    napi_throw_range_error(env, "MEMBRANE_NATIVE", "getReport: vmpl must be 0..3");
    return NULL;
  }

  // The kernel writes into resp: size it for the ABI's maximum, owned here.
  size_t resp_size = abi == 6 ? SEV_GUEST_RESP_SIZE : MSG_REPORT_RSP_SIZE;
  uint8_t *resp = calloc(1, resp_size);
  if (resp == NULL) {
    napi_throw_error(env, "MEMBRANE_NATIVE", "out of memory");
    return NULL;
  }
  struct snp_report_req6 req;  // same 96-byte layout as MSG_REPORT_REQ
  memset(&req, 0, sizeof(req));
  memcpy(req.user_data, udata, REPORT_DATA_SIZE);
  req.vmpl = vmpl;

  int fd = open(device, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    free(resp);
    throw_sys(env, "open", err, 0, 0);
    return NULL;
  }
  int rc, err = 0;
  uint32_t fw = 0, vmm = 0;
  if (abi == 6) {
    struct snp_guest_request_ioctl6 io;
    memset(&io, 0, sizeof(io));
    io.msg_version = 1;
    io.req_data = (uint64_t)(uintptr_t)&req;
    io.resp_data = (uint64_t)(uintptr_t)resp;
    rc = ioctl(fd, SNP_GET_REPORT6, &io);
    err = errno;
    fw = (uint32_t)(io.exitinfo2 & 0xffffffffu);
    vmm = (uint32_t)(io.exitinfo2 >> 32);
  } else {
    struct sev_snp_guest_request5 io;
    memset(&io, 0, sizeof(io));
    io.req_msg_type = MSG_REPORT_REQ;
    io.rsp_msg_type = MSG_REPORT_RSP;
    io.msg_version = 1;
    io.request_len = REPORT_REQ_SIZE;
    io.request_uaddr = (uint64_t)(uintptr_t)&req;
    io.response_len = MSG_REPORT_RSP_SIZE;
    io.response_uaddr = (uint64_t)(uintptr_t)resp;
    rc = ioctl(fd, SNP_GET_REPORT5, &io);
    err = errno;
    fw = io.error;
  }
  close(fd);
  memset(&req, 0, sizeof(req));
  if (rc < 0) {
    free(resp);
    throw_sys(env, "ioctl", err, fw, vmm);
    return NULL;
  }
  napi_value out;
  napi_status s = napi_create_buffer_copy(env, resp_size, resp, NULL, &out);
  free(resp);
  if (s != napi_ok) {
    napi_throw_error(env, "MEMBRANE_NATIVE", "N-API buffer allocation failed");
    return NULL;
  }
  return out;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"layout", NULL, layout, NULL, NULL, NULL, napi_default, NULL},
      {"getReport", NULL, get_report, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) != napi_ok) return NULL;
  return exports;
}
