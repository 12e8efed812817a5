{
  "targets": [
    {
      "target_name": "membrane_gcm",
      "sources": ["proxies/core/native/gcm.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    },
    {
      "target_name": "membrane_snp",
      "sources": ["skr-client/native/snp.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    },
    {
      "target_name": "membrane_process",
      "sources": ["runtime/native/process.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
