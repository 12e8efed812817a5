// Types for the parts of fuse-native 2.2.6 (CommonJS, untyped) the volume uses.
declare module 'fuse-native' {
  type Callback = (...args: unknown[]) => void;
  interface FuseOptions {
    debug?: boolean;
    force?: boolean;
    mkdir?: boolean;
    allowOther?: boolean;
    fsname?: string;
    subtype?: string;
    maxRead?: number;
    autoCache?: boolean;
    /** Per-op timeouts in ms, or false for none. */
    timeout?: number | false | Record<string, number | false>;
  }
  class Fuse {
    constructor(mnt: string, ops: Record<string, Callback>, opts?: FuseOptions);
    readonly mnt: string;
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    protected _fuseOptions(): string;
    protected _close(cb: (err: Error | null) => void): void;
    protected _thread: Buffer | null;
    static unmount(mnt: string, cb: (err: Error | null) => void): void;
  }
  export = Fuse;
}
