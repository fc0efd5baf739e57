import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { TestCluster } from '../support/cluster.js';
import { NIX_ENV, ROOT, type BuildJson } from './buildSupport.js';
import type { MachineSpec } from '../../src/config/machineSpec.js';

/** Shared by the fault*.test.ts files: ad-hoc derivations, edited machines files, a black-hole proxy. */

const run = promisify(execFile);

/**
 * Instantiates a Nix expression in which `mk` (fixtures/nix/lib.nix) and
 * `nonce` are in scope, with a fresh nonce so nothing is built already. Returns the .drv
 * paths (one per line of nix-instantiate's output).
 */
export async function instantiateExpr(expr: string): Promise<string[]> {
  const nonce = randomBytes(6).toString('hex');
  const lib = join(ROOT, 'fixtures', 'nix', 'lib.nix');
  const full = `let inherit (import ${lib} { nonce = "${nonce}"; }) mk nonce; in ${expr}`;
  try {
    const { stdout } = await run('nix-instantiate', ['-E', full], { env: NIX_ENV });
    return stdout.trim().split('\n');
  } catch (error) {
    // execFile's message is only the command line; what Nix said is on stderr. A Nix killed by a signal says nothing.
    const { stderr, code, signal } = error as { stderr?: string; code?: number | string; signal?: string | null };
    const said = stderr?.trim() ? stderr.trim().slice(-2000) : `no output (exit ${String(code)}, signal ${String(signal)})`;
    throw new Error(`nix-instantiate failed: ${said}`, { cause: error });
  }
}

/** `n` independent leaves `<prefix>-<i>` sleeping `sleep` seconds and a top `<prefix>-top` reading them. */
export function wideExpr(prefix: string, n: number, sleep: string): string {
  return `mk { name = "${prefix}-top"; sleep = "0"; deps = builtins.genList (i: mk { name = "${prefix}-\${toString i}"; sleep = "${sleep}"; }) ${n}; }`;
}

/** An entry of the cluster's machines.json, as the config module reads it. */
export type MachineJson = MachineSpec;

/** Writes an edited copy of the cluster's machines.json next to it and returns its path. */
export function editedMachines(cluster: TestCluster, name: string, edit: (machines: MachineJson[]) => MachineJson[]): string {
  const machines = JSON.parse(readFileSync(cluster.machinesFile, 'utf8')) as MachineJson[];
  const file = join(cluster.dir, `${name}.machines.json`);
  writeFileSync(file, JSON.stringify(edit(machines), null, 2));
  return file;
}

export function job(json: BuildJson, name: string): BuildJson['jobs'][number] {
  const found = json.jobs.find((j) => j.name === name);
  if (!found) throw new Error(`no job named ${name} in ${json.jobs.map((j) => j.name).join(', ')}`);
  return found;
}

/**
 * A TCP proxy to a builder's sshd that can start dropping every byte in
 * both directions without closing anything: the "network went silent" case.
 */
export class BlackHoleProxy {
  private readonly sockets = new Set<Socket>();
  private dropping = false;

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(targetPort: number): Promise<BlackHoleProxy> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('proxy has no port');
    const proxy = new BlackHoleProxy(server, address.port);
    server.on('connection', (client) => proxy.forward(client, targetPort));
    return proxy;
  }

  drop(): void {
    this.dropping = true;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private forward(client: Socket, targetPort: number): void {
    const upstream = connect(targetPort, '127.0.0.1');
    for (const [from, to] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      this.sockets.add(from);
      from.on('data', (chunk) => {
        if (!this.dropping) to.write(chunk);
      });
      from.on('error', () => to.destroy());
      from.on('close', () => {
        this.sockets.delete(from);
        to.destroy();
      });
    }
  }
}

/** Command lines of the builder's live processes. */
export function commandLines(cluster: TestCluster, builder: string): string[] {
  return cluster.processes(builder).flatMap((pid) => {
    try {
      return [readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ')];
    } catch {
      return [];
    }
  });
}

/**
 * A build runs on the builder: the fixtures' builds sleep with /bin/sleep.
 * Nix runs each build in a mount namespace of its own, so the build is found
 * through its ancestors (nix-store --serve lives in the builder's namespace).
 */
export function building(cluster: TestCluster, builder: string): boolean {
  return buildCount(cluster, builder) > 0;
}

/** How many builds run on the builder (see building). */
export function buildCount(cluster: TestCluster, builder: string): number {
  const ours = new Set(cluster.processes(builder));
  let count = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    if (!readProc(`/proc/${entry}/cmdline`).startsWith('/bin/sleep\0')) continue;
    for (let pid = parentOf(Number(entry)), hops = 0; pid > 1 && hops < 4; pid = parentOf(pid), hops++) {
      if (ours.has(pid)) {
        count++;
        break;
      }
    }
  }
  return count;
}

function readProc(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function parentOf(pid: number): number {
  const stat = readProc(`/proc/${pid}/stat`);
  // Fields after the parenthesised command name: state, then the parent pid.
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1] ?? 0);
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it returns true or `timeoutMs` passes; returns its last answer. */
export async function eventually(check: () => boolean, timeoutMs: number, stepMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (check()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(stepMs);
  }
}
