import { readFile as fsReadFile } from 'node:fs/promises';
import { join } from 'node:path';
import PQueue from 'p-queue';
import { assertDrvPath, DEFAULT_STORE_DIR } from '../storePath/storePath.js';
import type { Derivation, DerivationSet } from './derivation.js';
import { decodeDrvBytes } from './drvBytes.js';
import { DrvJsonError, DrvNotFoundError, DrvReadError } from './errors.js';
import { findInputCycle } from './inputCycle.js';
import { parseDrv } from './parseDrv.js';
import { readShowDerivationJson } from './showDerivationJson.js';

export interface LoadDrvClosureOptions {
  storeDir?: string;
  /** Reads one file; defaults to fs.readFile. Bytes are decoded losslessly (drvBytes.ts); a string is taken as it is. */
  readFile?: (file: string) => Promise<string | Uint8Array>;
  /**
   * Where the store's files physically are, like Nix's `--store local?root=…`:
   * `/nix/store/x.drv` is read from `<storeRoot>/nix/store/x.drv`.
   */
  storeRoot?: string;
  /** Maps a derivation path to the file to read; overrides storeRoot. */
  fileFor?: (drvPath: string) => string;
  /** Files read at once; enough to hide disk latency without exhausting file descriptors. */
  concurrency?: number;
}

const DEFAULT_CONCURRENCY = 32;

interface Pending {
  drvPath: string;
  referencedBy: string | undefined;
}

/**
 * Loads the `.drv` files of `roots` and, through inputDrvs, of everything
 * they depend on. The resulting map lists derivations in discovery order
 * (breadth-first from the roots), whatever order the reads finish in.
 */
export async function loadDrvClosure(roots: string[], opts: LoadDrvClosureOptions = {}): Promise<DerivationSet> {
  const storeDir = opts.storeDir ?? DEFAULT_STORE_DIR;
  for (const root of roots) assertDrvPath(root, 'root derivation', storeDir);
  const fileFor = opts.fileFor ?? (opts.storeRoot === undefined ? (p: string) => p : (p: string) => join(opts.storeRoot!, p));
  const readFile = opts.readFile ?? ((file: string) => fsReadFile(file));
  const loadOne = async ({ drvPath, referencedBy }: Pending): Promise<Derivation> => {
    const file = fileFor(drvPath);
    let text: string;
    try {
      const content = await readFile(file);
      text = typeof content === 'string' ? content : decodeDrvBytes(content);
    } catch (e) {
      if ((e as NodeJS.ErrnoException | null)?.code === 'ENOENT') throw new DrvNotFoundError(drvPath, file, referencedBy, { cause: e });
      throw new DrvReadError(file, e);
    }
    return parseDrv(text, drvPath, { storeDir, file });
  };
  const discovered = await crawl(roots, loadOne, Math.max(1, opts.concurrency ?? DEFAULT_CONCURRENCY));
  return { roots: [...new Set(roots)], drvs: discovered };
}

/**
 * Breadth-first walk with at most `limit` reads at once (p-queue); the first
 * failure stops it: nothing new starts, and it is thrown once the reads
 * already under way have ended.
 */
async function crawl(roots: string[], loadOne: (p: Pending) => Promise<Derivation>, limit: number): Promise<Map<string, Derivation>> {
  const queue = new PQueue({ concurrency: limit });
  const order: string[] = [];
  const seen = new Set<string>();
  const loaded = new Map<string, Derivation>();
  let failure: { error: unknown } | undefined;
  const enqueue = (drvPath: string, referencedBy: string | undefined): void => {
    if (seen.has(drvPath) || failure) return;
    seen.add(drvPath);
    order.push(drvPath);
    void queue.add(async () => {
      if (failure) return;
      try {
        const drv = await loadOne({ drvPath, referencedBy });
        loaded.set(drvPath, drv);
        for (const input of Object.keys(drv.inputDrvs)) enqueue(input, drvPath);
      } catch (error) {
        failure ??= { error };
        queue.clear();
      }
    });
  };
  for (const root of roots) enqueue(root, undefined);
  await queue.onIdle();
  if (failure) throw failure.error;
  return new Map(order.map((p) => [p, loaded.get(p)!]));
}

/**
 * Builds the closure of `roots` from `nix show-derivation -r` JSON.
 * Without roots, the roots are the derivations nothing else in the file depends on.
 */
export function loadJsonClosure(text: string, source: string, roots?: string[], storeDir?: string): DerivationSet {
  const all = readShowDerivationJson(text, source, storeDir);
  const cycle = findInputCycle(all);
  if (cycle) {
    throw new DrvJsonError(source, undefined, `derivations depend on each other in a cycle, so none of them can be built first: ${cycle.join(' → ')}`);
  }
  const chosen = roots === undefined ? topLevel(all) : [...new Set(roots)];
  for (const root of chosen) {
    if (!all.has(root)) throw new DrvJsonError(source, undefined, `the requested root ${root} is not in the file`);
  }
  const reachable = new Set<string>(chosen);
  const stack = [...chosen];
  while (stack.length > 0) {
    const drvPath = stack.pop()!;
    for (const input of Object.keys(all.get(drvPath)!.inputDrvs)) {
      if (!all.has(input)) {
        throw new DrvJsonError(source, JSON.stringify(drvPath), `its input derivation ${input} is not in the file`);
      }
      if (!reachable.has(input)) {
        reachable.add(input);
        stack.push(input);
      }
    }
  }
  const drvs = new Map<string, Derivation>();
  for (const [drvPath, drv] of all) if (reachable.has(drvPath)) drvs.set(drvPath, drv);
  return { roots: chosen, drvs };
}

function topLevel(all: Map<string, Derivation>): string[] {
  const depended = new Set<string>();
  for (const drv of all.values()) for (const input of Object.keys(drv.inputDrvs)) depended.add(input);
  return [...all.keys()].filter((p) => !depended.has(p));
}
