/**
 * Notices when certificate and key files change on disk, the way renewal tools replace them:
 * certbot points a symlink in `live/` at a new file in `archive/`; cert-manager (a Kubernetes
 * secret volume) swaps a `..data` symlink to a new directory; most others write a temporary
 * file and rename it over the old one. None of these writes the watched file in place, and a
 * watch on the file itself stops at the first rename (it follows the old inode). So the
 * directories holding the files are watched (both where the configured path is and where its
 * symlinks lead, re-resolved after every change), every event in them is a hint, and what
 * decides is a signature of each file as `stat` sees it through its symlinks (device, inode,
 * size, mtime): a hint that changes no signature costs a few stat calls and nothing else.
 *
 * fs.watch can miss events (some overlay and network filesystems never send them), so the
 * signatures are also compared every POLL_MS. Changes are debounced (DEBOUNCE_MS), so that a
 * certificate and its key replaced one after the other are read once, as a pair.
 *
 * Owned by its TlsTermination, which stops it (every watcher and timer with it).
 */
import { realpathSync, statSync, watch, type FSWatcher } from "node:fs";
import { dirname } from "node:path";

/** A change is acted on once the files have been quiet this long. */
export const DEBOUNCE_MS = 200;
/** How often the signatures are compared without an event. */
export const POLL_MS = 10_000;

function signature(path: string): string {
  try {
    const s = statSync(path);
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}`;
  } catch (e) {
    return `missing:${(e as { code?: string }).code ?? ""}`;
  }
}

export class FileWatch {
  private watchers: FSWatcher[] = [];
  private readonly poll: ReturnType<typeof setInterval>;
  private debounce: ReturnType<typeof setTimeout> | undefined;
  private paths: readonly string[] = [];
  private seen = "";
  private stopped = false;

  /** `onChange` runs (debounced) when any of the files' signatures moved. */
  constructor(
    paths: readonly string[],
    private readonly onChange: () => void,
    private readonly onError: (e: unknown) => void,
  ) {
    this.watch(paths);
    this.poll = setInterval(() => this.check(), POLL_MS);
    this.poll.unref();
  }

  /** Watch these files from now on (a reload may name others); their current state is the baseline. */
  watch(paths: readonly string[]): void {
    if (this.stopped) return;
    this.paths = [...new Set(paths)];
    this.seen = this.signatures();
    this.watchDirs();
  }

  /** A watch on each directory that holds a file or the file its symlinks lead to. */
  private watchDirs(): void {
    for (const w of this.watchers) w.close();
    this.watchers = [];
    const dirs = new Set<string>();
    for (const p of this.paths) {
      dirs.add(dirname(p));
      try {
        dirs.add(dirname(realpathSync(p)));
      } catch {
        // Not there (yet): its own directory is watched, and the poll goes on.
      }
    }
    for (const dir of dirs) {
      try {
        const w = watch(dir, { persistent: false }, () => this.hint());
        w.on("error", () => {});
        this.watchers.push(w);
      } catch (e) {
        // A directory that cannot be watched is still polled.
        this.onError(e);
      }
    }
  }

  private signatures(): string {
    return this.paths.map(signature).join("|");
  }

  private hint(): void {
    if (this.stopped) return;
    if (this.debounce !== undefined) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      this.check();
    }, DEBOUNCE_MS);
  }

  private check(): void {
    if (this.stopped) return;
    const now = this.signatures();
    if (now === this.seen) return;
    this.seen = now;
    // A symlink may lead somewhere else now (a swapped ..data, a re-pointed live/ link).
    this.watchDirs();
    try {
      this.onChange();
    } catch (e) {
      this.onError(e);
    }
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.poll);
    if (this.debounce !== undefined) clearTimeout(this.debounce);
    for (const w of this.watchers) w.close();
    this.watchers = [];
  }
}
