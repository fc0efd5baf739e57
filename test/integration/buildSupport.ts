import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { localNixEnv } from '../../scripts/cluster/localNix.js';

/** Shared by the build*.test.ts files: instantiate fixtures, run the CLI, read its JSON. */

export const ROOT = join(import.meta.dirname, '..', '..');
export const NIX_ENV: NodeJS.ProcessEnv = localNixEnv();
const run = promisify(execFile);

/** Fresh derivations every call (the nonce changes every hash), so nothing is built already. */
export async function instantiate(attr: string, file = 'cases.nix'): Promise<string[]> {
  const nonce = randomBytes(6).toString('hex');
  const { stdout } = await run('nix-instantiate', [join(ROOT, 'fixtures', 'nix', file), '-A', attr, '--argstr', 'nonce', nonce], { env: NIX_ENV });
  return stdout.trim().split('\n');
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** `node bin/offload.js ...args` as a user runs it. */
export function offload(args: string[], env: NodeJS.ProcessEnv = NIX_ENV): Promise<CliResult> {
  return startOffload(args, env).result;
}

export interface RunningCli {
  child: ChildProcess;
  result: Promise<CliResult>;
  /** Resolves once stderr contains `text`. */
  stderrContains(text: string): Promise<void>;
}

/**
 * Each run in a fresh folder, removed when it ends: `offload build` leaves
 * `result` links (GC roots) in its working directory, as nix-build does, and
 * they must land neither in the repository nor keep test outputs alive.
 */
export function startOffload(args: string[], env: NodeJS.ProcessEnv = NIX_ENV): RunningCli {
  const cwd = mkdtempSync(join(tmpdir(), 'offload-cli-'));
  const child = spawn(process.execPath, [join(ROOT, 'bin', 'offload.js'), ...args], { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  child.once('close', () => rmSync(cwd, { recursive: true, force: true }));
  let stdout = '';
  let stderr = '';
  const waiters: Array<{ text: string; resolve: () => void }> = [];
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    for (const w of waiters.filter((x) => stderr.includes(x.text))) w.resolve();
  });
  const result = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : -1), stdout, stderr }));
  });
  return {
    child,
    result,
    stderrContains: (text) =>
      stderr.includes(text)
        ? Promise.resolve()
        : new Promise<void>((resolve, reject) => {
            waiters.push({ text, resolve });
            void result.then((r) => reject(new Error(`offload exited (${r.code}) before printing ${JSON.stringify(text)}:\n${r.stderr}`)));
          }),
  };
}

export interface BuildJson {
  outputs: Record<string, Record<string, string>>;
  jobs: Array<{ drvPath: string; name: string; host: string; status: string; start: number | null; end: number | null; attempts: number; error?: string; failure?: string; sent: string[]; substituted: string[] }>;
  makespan: number;
}

export function parseJson(result: CliResult): BuildJson {
  try {
    return JSON.parse(result.stdout) as BuildJson;
  } catch {
    throw new Error(`offload did not print JSON (exit ${result.code}):\n${result.stdout}\n--- stderr ---\n${result.stderr}`);
  }
}

export function hostOf(json: BuildJson, name: string): string {
  const job = json.jobs.find((j) => j.name === name);
  if (!job) throw new Error(`no job named ${name} in ${json.jobs.map((j) => j.name).join(', ')}`);
  return job.host;
}

/** Each fixture output starts with `<name> <start> <end>` and then holds its dependencies' outputs. */
export interface BuildStamp {
  name: string;
  start: number;
  end: number;
}

export function stamps(outputPath: string): BuildStamp[] {
  return readFileSync(outputPath, 'utf8')
    .split('\n')
    .map((line) => line.split(' '))
    .filter((f) => f.length === 3 && Number.isFinite(Number(f[1])) && Number.isFinite(Number(f[2])))
    .map(([name, start, end]) => ({ name: name!, start: Number(start), end: Number(end) }));
}

/** Most builds running at once among `intervals`. */
export function maxOverlap(intervals: Array<{ start: number; end: number }>): number {
  const events = intervals.flatMap((i) => [
    { t: i.start, d: 1 },
    { t: i.end, d: -1 },
  ]);
  events.sort((a, b) => a.t - b.t || a.d - b.d);
  let now = 0;
  let max = 0;
  for (const e of events) max = Math.max(max, (now += e.d));
  return max;
}
