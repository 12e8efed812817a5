/**
 * The directory view of a flat object store, cached briefly. Stores list object
 * paths; directories are implied by them. A snapshot is rebuilt from one list()
 * at most every `ttlMs` (concurrent callers share the refresh), so `ls`, `find`
 * and the getattr storms they cause cost one listing, not one per call.
 *
 * With a pinned manifest the view is the manifest: unlisted objects are hidden,
 * listed objects missing from the store are shown (their access fails, audited).
 * `manifest.json` at the root is metadata and never shown for datasources.
 * If a path is both an object and a directory prefix (possible in blob stores),
 * the directory wins and the object is hidden.
 */
import { ancestors, baseName, parentOf, ROOT } from './paths.js';
import type { BlobInfo, BlobStore } from './store/types.js';

export type TreeEntry =
  | { kind: 'dir' }
  /** `info` undefined: pinned by the manifest but absent from the store. */
  | { kind: 'file'; info: BlobInfo | undefined };

export class TreeSnapshot {
  private readonly dirs = new Map<string, Set<string>>([[ROOT, new Set()]]);
  private readonly files = new Map<string, BlobInfo | undefined>();

  constructor(objects: Iterable<[string, BlobInfo | undefined]>) {
    const all = [...objects];
    for (const [path] of all) {
      const chain = ancestors(path);
      for (let k = 1; k < chain.length; k++) this.addDir(chain[k]!);
    }
    for (const [path, info] of all) {
      if (this.dirs.has(path)) continue; // a directory of the same name wins
      this.files.set(path, info);
      this.dirs.get(parentOf(path))!.add(baseName(path));
    }
  }

  private addDir(path: string): void {
    if (this.dirs.has(path)) return;
    this.dirs.set(path, new Set());
    this.dirs.get(parentOf(path))!.add(baseName(path));
  }

  lookup(path: string): TreeEntry | undefined {
    if (this.dirs.has(path)) return { kind: 'dir' };
    if (this.files.has(path)) return { kind: 'file', info: this.files.get(path) };
    return undefined;
  }

  /** Names in directory `path`, or undefined if it is not a directory. */
  children(path: string): string[] | undefined {
    const c = this.dirs.get(path);
    return c ? [...c] : undefined;
  }

  /** Every object path (files only). */
  paths(): IterableIterator<string> {
    return this.files.keys();
  }

  /** Every directory path (the root included). */
  directories(): IterableIterator<string> {
    return this.dirs.keys();
  }
}

export interface ListingOptions {
  ttlMs: number;
  /** Paths to leave out of the view (e.g. the root manifest). */
  hide?: (path: string) => boolean;
  /** When set, exactly these paths are shown, present in the store or not. */
  pinned?: Iterable<string>;
  now?: () => number;
}

export class Listing {
  private current: { at: number; snap: TreeSnapshot } | undefined;
  private refreshing: Promise<TreeSnapshot> | undefined;
  private generation = 0;
  private readonly now: () => number;
  private readonly pinned: Set<string> | undefined;

  constructor(
    private readonly store: BlobStore,
    private readonly opts: ListingOptions,
  ) {
    this.now = opts.now ?? Date.now;
    this.pinned = opts.pinned ? new Set(opts.pinned) : undefined;
  }

  async snapshot(): Promise<TreeSnapshot> {
    const cur = this.current;
    if (cur && this.now() - cur.at < this.opts.ttlMs) return cur.snap;
    if (!this.refreshing) {
      const gen = this.generation;
      this.refreshing = this.build().then(
        (snap) => {
          // An invalidate() during the listing makes this result stale already: do not cache it.
          if (gen === this.generation) this.current = { at: this.now(), snap };
          this.refreshing = undefined;
          return snap;
        },
        (e) => {
          this.refreshing = undefined;
          throw e;
        },
      );
    }
    return this.refreshing;
  }

  /** Drops the cached snapshot (after this volume changed the store itself). */
  invalidate(): void {
    this.current = undefined;
    this.refreshing = undefined;
    this.generation++;
  }

  private async build(): Promise<TreeSnapshot> {
    const found = new Map<string, BlobInfo | undefined>();
    for await (const info of this.store.list()) {
      if (this.opts.hide?.(info.path)) continue;
      if (this.pinned && !this.pinned.has(info.path)) continue;
      found.set(info.path, info);
    }
    if (this.pinned) for (const p of this.pinned) if (!found.has(p)) found.set(p, undefined);
    return new TreeSnapshot(found);
  }
}
