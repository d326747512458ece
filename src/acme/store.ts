/**
 * `acme.storage`: the account key, each name's key and certificate, the pending HTTP-01 answers,
 * and the locks that let replicas share one store (paths.ts has the layout).
 *
 * A shared directory rather than the Redis of the rate limits: the certificates must be files
 * anyway (every worker's and every replica's TlsTermination watches them and serves a renewal
 * by itself, tls/file-watch.ts), a directory needs no server to be up for a restart to serve what
 * it holds, and a volume shared by replicas (NFS, a Kubernetes ReadWriteMany volume) is the
 * usual way certificates are shared. The lock is an O_EXCL create, which NFSv3+ and local
 * filesystems make atomic.
 *
 * Every file is written to a temporary name and renamed into place (readers never see half a
 * file), at mode 0600 in directories at 0700: they hold private keys.
 */
import { X509Certificate } from "node:crypto";
import { closeSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync, writeSync, chmodSync, type Stats } from "node:fs";
import { dirname } from "node:path";
import { hostname } from "node:os";
import { accountFiles, certFile, http01File, lockFile, tlsAlpn01File, TOKEN } from "./paths.ts";
import { PLACEHOLDER_ORG } from "./placeholder.ts";

/** A name's certificate as the store holds it. */
export interface StoredCert {
  readonly pem: string;
  readonly notBefore: number;
  readonly notAfter: number;
  /** A self-signed stand-in (placeholder.ts), not from the CA. */
  readonly placeholder: boolean;
  readonly fingerprint: string;
}

/** A lock's file: who holds it and until when (ms since the epoch). */
interface LockBody {
  readonly owner: string;
  readonly expires: number;
}

let tmpSeq = 0;

export class AcmeStore {
  /** Names this process, in its lock files. */
  readonly owner = `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;

  constructor(readonly dir: string) {}

  /** Create the directories (0700); throws when the storage cannot be written. */
  prepare(): void {
    for (const sub of ["", "accounts", "certs", "locks", "http-01", "tls-alpn-01"]) {
      mkdirSync(`${this.dir}/${sub}`, { recursive: true, mode: 0o700 });
    }
    chmodSync(this.dir, 0o700);
  }

  /** Write `text` at `path` whole, at 0600: a temporary file, then a rename over the old one. */
  private writeFile(path: string, text: string): void {
    const tmp = `${path}.${process.pid}.${tmpSeq++}.tmp`;
    const fd = openSync(tmp, "wx", 0o600);
    try {
      writeSync(fd, text);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  }

  private readText(path: string): string | undefined {
    try {
      return readFileSync(path, "utf8");
    } catch (e) {
      if ((e as { code?: string }).code === "ENOENT") return undefined;
      throw e;
    }
  }

  /**
   * Each name's file as last read, by its inode, size and mtime: /stats and /metrics read every
   * name at each poll, and a file is replaced only by a rename (a new inode), so a stat tells
   * whether the parse can be kept.
   */
  private readonly parsed = new Map<string, { stamp: string; cert: StoredCert | undefined }>();

  /** The name's stored key and certificate; undefined when there is none (or it does not read). */
  readCert(name: string): StoredCert | undefined {
    const path = certFile(this.dir, name);
    let st: Stats;
    try {
      st = statSync(path);
    } catch (e) {
      if ((e as { code?: string }).code === "ENOENT") {
        this.parsed.delete(name);
        return undefined;
      }
      throw e;
    }
    const stamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
    const known = this.parsed.get(name);
    if (known?.stamp === stamp) return known.cert;
    const pem = this.readText(path);
    if (pem === undefined) return undefined;
    let cert: StoredCert | undefined;
    try {
      const x = new X509Certificate(pem);
      cert = {
        pem,
        notBefore: Date.parse(x.validFrom),
        notAfter: Date.parse(x.validTo),
        placeholder: x.subject.split("\n").includes(`O=${PLACEHOLDER_ORG}`),
        fingerprint: x.fingerprint256,
      };
    } catch {
      cert = undefined;
    }
    this.parsed.set(name, { stamp, cert });
    return cert;
  }

  /** Put an issued key and chain in service: one rename, so a watcher reads both or neither. */
  writeCert(name: string, keyPem: string, chainPem: string): void {
    this.writeFile(certFile(this.dir, name), `${keyPem.trim()}\n${chainPem.trim()}\n`);
  }

  /**
   * Write a placeholder unless the name has a file already: link() refuses to replace, so a
   * placeholder never lands on a certificate another replica just stored. Whether it wrote.
   */
  writePlaceholderIfAbsent(name: string, pem: string): boolean {
    const path = certFile(this.dir, name);
    const tmp = `${path}.${process.pid}.${tmpSeq++}.tmp`;
    this.writeFile(tmp, pem);
    try {
      linkSync(tmp, path);
      return true;
    } catch (e) {
      if ((e as { code?: string }).code === "EEXIST") return false;
      throw e;
    } finally {
      unlinkSync(tmp);
    }
  }

  /**
   * Take the lock on ordering `name` for `lease` ms: an O_EXCL create. A lock whose lease ran out
   * (its holder died mid-order) is taken over: renamed aside, and taken only if what was renamed
   * is still the stale lock that was read (else another replica took it over first, and it is
   * put back). Returns the release, or undefined when another replica holds it.
   */
  lock(name: string, lease: number): (() => void) | undefined {
    const path = lockFile(this.dir, name);
    const body: LockBody = { owner: this.owner, expires: Date.now() + lease };
    for (let attempt = 0; attempt < 2; attempt++) {
      // Written whole under a temporary name, then linked to the lock's name (link fails if the
      // name exists): no replica ever reads a lock half-written and takes it for a stale one.
      const tmp = `${path}.${process.pid}.${tmpSeq++}.tmp`;
      try {
        writeFileSync(tmp, JSON.stringify(body), { mode: 0o600 });
        linkSync(tmp, path);
        return () => this.unlock(path);
      } catch (e) {
        if ((e as { code?: string }).code !== "EEXIST") throw e;
      } finally {
        try {
          unlinkSync(tmp);
        } catch {
          // Not made (the write failed): nothing to remove.
        }
      }
      const held = this.readText(path);
      if (held === undefined) continue;
      let expires = 0;
      try {
        expires = (JSON.parse(held) as LockBody).expires;
      } catch {
        // Not a lock this code writes (it links only whole ones): treat it as lapsed.
        expires = 0;
      }
      if (expires > Date.now()) return undefined;
      const aside = `${path}.${process.pid}.${tmpSeq++}.stale`;
      try {
        renameSync(path, aside);
      } catch {
        return undefined;
      }
      if (this.readText(aside) !== held) {
        // A fresh lock of another replica: give it back (link fails if a third took the name).
        try {
          linkSync(aside, path);
        } catch {
          // Someone holds the name either way.
        }
        unlinkSync(aside);
        return undefined;
      }
      unlinkSync(aside);
    }
    return undefined;
  }

  private unlock(path: string): void {
    // Only our own: a lease that ran out may have been taken over.
    const held = this.readText(path);
    if (held === undefined) return;
    try {
      if ((JSON.parse(held) as LockBody).owner !== this.owner) return;
    } catch {
      return;
    }
    try {
      unlinkSync(path);
    } catch {
      // Gone already.
    }
  }

  /** RFC 8555 §8.3: the key authorization served at /.well-known/acme-challenge/TOKEN. */
  setHttp01(token: string, keyAuthorization: string): void {
    if (!TOKEN.test(token)) throw new Error(`the CA sent an HTTP-01 token that is not base64url: ${JSON.stringify(token)}`);
    this.writeFile(http01File(this.dir, token), keyAuthorization);
  }

  removeHttp01(token: string): void {
    if (!TOKEN.test(token)) return;
    try {
      unlinkSync(http01File(this.dir, token));
    } catch {
      // Gone already.
    }
  }

  /** RFC 8737 §3: the certificate (and its key) that answers an acme-tls/1 handshake for `name`. */
  setTlsAlpn01(name: string, pem: string): void {
    this.writeFile(tlsAlpn01File(this.dir, name), pem);
  }

  removeTlsAlpn01(name: string): void {
    try {
      unlinkSync(tlsAlpn01File(this.dir, name));
    } catch {
      // Gone already.
    }
  }

  /** The account key for a directory (PEM), made by `make` and stored the first time. */
  async accountKey(directory: string, make: () => Promise<string>): Promise<string> {
    const { key } = accountFiles(this.dir, directory);
    const held = this.readText(key);
    if (held !== undefined) return held;
    const made = await make();
    // Two replicas making one at once: the first stored wins, and both use it.
    const tmp = `${key}.${process.pid}.${tmpSeq++}.tmp`;
    this.writeFile(tmp, made);
    try {
      linkSync(tmp, key);
    } catch (e) {
      if ((e as { code?: string }).code !== "EEXIST") throw e;
    } finally {
      unlinkSync(tmp);
    }
    return this.readText(key)!;
  }

  accountUrl(directory: string): string | undefined {
    const text = this.readText(accountFiles(this.dir, directory).url);
    if (text === undefined) return undefined;
    try {
      return (JSON.parse(text) as { url?: string }).url;
    } catch {
      return undefined;
    }
  }

  saveAccountUrl(directory: string, url: string): void {
    const path = accountFiles(this.dir, directory).url;
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    this.writeFile(path, JSON.stringify({ url }));
  }
}
