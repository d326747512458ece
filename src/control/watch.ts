/**
 * `--watch`: follow the config file and call `onChange` once things have been quiet for
 * `debounceMs` after it changed.
 *
 * The directory is watched, not the file: editors that save by writing a temporary file and
 * renaming it over the original replace the file's inode, and a watch on the file itself stops
 * firing after the first such save (measured on Bun 1.4.5's fs.watch). Events for other names in the directory are
 * ignored. A burst of events (write, chmod, rename) becomes one call.
 */
import { watch, type FSWatcher } from "node:fs";
import { basename, dirname, resolve } from "node:path";

export class ConfigWatcher {
  private watcher: FSWatcher | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly dir: string;
  private readonly name: string;

  constructor(
    file: string,
    private readonly onChange: () => void,
    private readonly debounceMs = 200,
  ) {
    const path = resolve(file);
    this.dir = dirname(path);
    this.name = basename(path);
  }

  start(): void {
    if (this.watcher) return;
    this.watcher = watch(this.dir, { persistent: false }, (_event, filename) => {
      // Some platforms give no name; then any change in the directory may be ours.
      if (filename !== null && filename !== undefined && String(filename) !== this.name) return;
      clearTimeout(this.timer);
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.onChange();
      }, this.debounceMs);
    });
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.watcher?.close();
    this.watcher = undefined;
  }

  get running(): boolean {
    return this.watcher !== undefined;
  }
}
