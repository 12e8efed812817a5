/** What a benchmarked volume reported through its metrics hooks since it was mounted. */
export interface VolumeCounters {
  cacheHits: number;
  cacheMisses: number;
  storeRequests: number;
  storeMs: number;
  framesDecrypted: number;
  bytesDecrypted: number;
  bytesEncrypted: number;
  authFailures: number;
}

export function zeroCounters(): VolumeCounters {
  return {
    cacheHits: 0,
    cacheMisses: 0,
    storeRequests: 0,
    storeMs: 0,
    framesDecrypted: 0,
    bytesDecrypted: 0,
    bytesEncrypted: 0,
    authFailures: 0,
  };
}
