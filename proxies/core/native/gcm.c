// Thin N-API binding onto the OpenSSL that Node itself bundles and exports.
//
// Why this exists: node:crypto allocates a fresh output Buffer and a fresh
// EVP_CIPHER_CTX (with an OpenSSL 3 provider fetch) for every frame. Profiling
// showed ~80% of decrypt time in malloc, page faults and fetch locks rather than
// in AES-GCM. Here one context per derived key is kept, only the IV is reset per
// frame, and output goes into caller-owned memory (in place is allowed).
//
// Safety contract (enforced here, not left to callers):
//  - open() never leaves plaintext behind when the tag does not verify: the
//    output range is cleansed before returning false.
//  - contexts are freed (and cleansed by OpenSSL) on destroy() or GC.
//  - this module is internal to proxies/core: IVs are derived by the caller
//    from frame sequence numbers and never cross the core's public API.
#include <node_api.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>

typedef struct {
  EVP_CIPHER_CTX *dec;
  EVP_CIPHER_CTX *enc;
} gcm_ctx;

#define CHECK(call)                                                  \
  do {                                                               \
    if ((call) != napi_ok) {                                         \
      napi_throw_error(env, "MEMBRANE_NATIVE", "N-API call failed"); \
      return NULL;                                                   \
    }                                                                \
  } while (0)

static void ctx_free(gcm_ctx *c) {
  if (c == NULL) return;
  if (c->dec) EVP_CIPHER_CTX_free(c->dec);
  if (c->enc) EVP_CIPHER_CTX_free(c->enc);
  c->dec = NULL;
  c->enc = NULL;
}

static void ctx_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  gcm_ctx *c = (gcm_ctx *)data;
  ctx_free(c);
  free(c);
}

static int get_bytes(napi_env env, napi_value v, unsigned char **p, size_t *len) {
  bool is_ta = false;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta) return 0;
  napi_typedarray_type t;
  void *data;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &t, len, &data, &ab, &off) != napi_ok) return 0;
  if (t != napi_uint8_array) return 0;
  *p = (unsigned char *)data;
  return 1;
}

static gcm_ctx *get_ctx(napi_env env, napi_value v) {
  void *data = NULL;
  if (napi_get_value_external(env, v, &data) != napi_ok) return NULL;
  gcm_ctx *c = (gcm_ctx *)data;
  if (c == NULL || c->dec == NULL) return NULL;
  return c;
}

// create(key: Uint8Array(32)) -> External
static napi_value create(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  unsigned char *key;
  size_t klen;
  if (argc < 1 || !get_bytes(env, argv[0], &key, &klen) || klen != 32) {
    napi_throw_type_error(env, "MEMBRANE_NATIVE", "create: key must be a 32-byte Uint8Array");
    return NULL;
  }
  gcm_ctx *c = (gcm_ctx *)calloc(1, sizeof(gcm_ctx));
  if (c == NULL) {
    napi_throw_error(env, "MEMBRANE_NATIVE", "out of memory");
    return NULL;
  }
  c->dec = EVP_CIPHER_CTX_new();
  c->enc = EVP_CIPHER_CTX_new();
  if (c->dec == NULL || c->enc == NULL ||
      EVP_DecryptInit_ex(c->dec, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
      EVP_CIPHER_CTX_ctrl(c->dec, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1 ||
      EVP_DecryptInit_ex(c->dec, NULL, NULL, key, NULL) != 1 ||
      EVP_EncryptInit_ex(c->enc, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
      EVP_CIPHER_CTX_ctrl(c->enc, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1 ||
      EVP_EncryptInit_ex(c->enc, NULL, NULL, key, NULL) != 1) {
    ctx_free(c);
    free(c);
    napi_throw_error(env, "MEMBRANE_NATIVE", "OpenSSL AES-256-GCM initialisation failed");
    return NULL;
  }
  napi_value ext;
  CHECK(napi_create_external(env, c, ctx_finalize, NULL, &ext));
  return ext;
}

// destroy(ctx): frees the key schedule now rather than at GC.
static napi_value destroy(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *data = NULL;
  if (argc >= 1 && napi_get_value_external(env, argv[0], &data) == napi_ok && data != NULL) {
    ctx_free((gcm_ctx *)data);
  }
  return NULL;
}

// Shared argument decoding for open/seal:
// (ctx, iv(12), aad, input, tag(16), output) ; input.length == output.length.
typedef struct {
  gcm_ctx *c;
  unsigned char *iv, *aad, *in, *tag, *out;
  size_t ivlen, aadlen, inlen, taglen, outlen;
} op_args;

static int decode(napi_env env, napi_callback_info info, op_args *a) {
  size_t argc = 6;
  napi_value argv[6];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 6) return 0;
  a->c = get_ctx(env, argv[0]);
  if (a->c == NULL) return 0;
  if (!get_bytes(env, argv[1], &a->iv, &a->ivlen) || a->ivlen != 12) return 0;
  if (!get_bytes(env, argv[2], &a->aad, &a->aadlen)) return 0;
  if (!get_bytes(env, argv[3], &a->in, &a->inlen)) return 0;
  if (!get_bytes(env, argv[4], &a->tag, &a->taglen) || a->taglen != 16) return 0;
  if (!get_bytes(env, argv[5], &a->out, &a->outlen) || a->outlen != a->inlen) return 0;
  if (a->inlen > 0x7fffffff || a->aadlen > 0x7fffffff) return 0;
  return 1;
}

// open(...) -> boolean. On false the output range holds zeros.
static napi_value gcm_open(napi_env env, napi_callback_info info) {
  op_args a;
  if (!decode(env, info, &a)) {
    napi_throw_type_error(env, "MEMBRANE_NATIVE", "open: bad arguments");
    return NULL;
  }
  EVP_CIPHER_CTX *x = a.c->dec;
  int ok = 1, n = 0;
  ok = ok && EVP_DecryptInit_ex(x, NULL, NULL, NULL, a.iv) == 1;
  if (ok && a.aadlen > 0) ok = EVP_DecryptUpdate(x, NULL, &n, a.aad, (int)a.aadlen) == 1;
  if (ok && a.inlen > 0) ok = EVP_DecryptUpdate(x, a.out, &n, a.in, (int)a.inlen) == 1;
  ok = ok && EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_TAG, 16, a.tag) == 1;
  ok = ok && EVP_DecryptFinal_ex(x, a.out + a.inlen, &n) == 1;
  if (!ok && a.outlen > 0) OPENSSL_cleanse(a.out, a.outlen);
  napi_value r;
  CHECK(napi_get_boolean(env, ok ? true : false, &r));
  return r;
}

// seal(...): writes ciphertext to output and the tag into `tag`.
static napi_value gcm_seal(napi_env env, napi_callback_info info) {
  op_args a;
  if (!decode(env, info, &a)) {
    napi_throw_type_error(env, "MEMBRANE_NATIVE", "seal: bad arguments");
    return NULL;
  }
  EVP_CIPHER_CTX *x = a.c->enc;
  int ok = 1, n = 0;
  ok = ok && EVP_EncryptInit_ex(x, NULL, NULL, NULL, a.iv) == 1;
  if (ok && a.aadlen > 0) ok = EVP_EncryptUpdate(x, NULL, &n, a.aad, (int)a.aadlen) == 1;
  if (ok && a.inlen > 0) ok = EVP_EncryptUpdate(x, a.out, &n, a.in, (int)a.inlen) == 1;
  ok = ok && EVP_EncryptFinal_ex(x, a.out + a.inlen, &n) == 1;
  ok = ok && EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_GET_TAG, 16, a.tag) == 1;
  if (!ok) {
    napi_throw_error(env, "MEMBRANE_NATIVE", "AES-256-GCM seal failed");
    return NULL;
  }
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"create", NULL, create, NULL, NULL, NULL, napi_default, NULL},
      {"destroy", NULL, destroy, NULL, NULL, NULL, napi_default, NULL},
      {"open", NULL, gcm_open, NULL, NULL, NULL, napi_default, NULL},
      {"seal", NULL, gcm_seal, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) != napi_ok) return NULL;
  return exports;
}
