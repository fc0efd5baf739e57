import { performance } from 'node:perf_hooks';
import PQueue from 'p-queue';
import { KeyFileError } from '../config/errors.js';
import type { Machine } from '../config/machine.js';
import { OffloadError } from '../errors/offloadError.js';
import { compareClaims, type Finding, type MachineClaims } from './builderClaims.js';
import type { StoreSpace } from './builderMetrics.js';
import { parsePressureLook, pressureLimits, pressureReasons, PRESSURE_COMMAND, type BuilderPressure, type PressureLook } from './builderPressure.js';
import { loadFindings, storeSpaceFindings, verdictOf, type StoreSpaceLimits, type Verdict } from './builderVerdict.js';
import { expectedHostKey, knownHostsFilesFor } from './expectedHostKey.js';
import { DEFAULT_GLOBAL_KNOWN_HOSTS_FILES, defaultUserKnownHostsFiles, loadKnownHosts } from './knownHosts.js';
import {
  NIX_VERSION_COMMAND,
  parseNixVersion,
  parseShowConfigJson,
  parseShowConfigText,
  SHOW_CONFIG_JSON_COMMAND,
  SHOW_CONFIG_TEXT_COMMAND,
  type BuilderNixConfig,
} from './nixConfigProbe.js';
import { ServeClient } from './serveClient.js';
import { probeSigningKeys } from './signingKeys.js';
import { builderImportFindings, keyReports, signingFindings, type KeyReport, type LocalTrust } from './trustFindings.js';
import { probeUnsignedImports, type UnsignedImports } from './unsignedImportProbe.js';
import { AuthenticationError, HostKeyMismatchError, HostUnreachableError, UnknownHostKeyError } from './sshErrors.js';
import { SshPool, type ExecResult } from './sshPool.js';
import { filterAnsiEscapes } from './terminalEscapes.js';

/**
 * `offload machines check`: connects to a builder and asks it, with fixed
 * commands only (nothing from the machines file reaches its shell), what it
 * really is, then compares that with what the machines file claims.
 */

export type HostKeyStatus = 'pinned' | 'known_hosts' | 'accepted unknown' | 'mismatch' | 'unknown' | 'not checked';

export interface BuilderCheck {
  hostName: string;
  address: string;
  port: number;
  user?: string;
  /** TCP + SSH handshake reached sshd; undefined when not tried (a local problem came first). */
  reachable?: boolean;
  /** Handshake and authentication, in milliseconds. */
  connectMs?: number;
  authenticated: boolean;
  hostKey: { status: HostKeyStatus; fingerprints: string[] };
  nixVersion?: string;
  /** Serve protocol version the builder's `nix-store --serve` announced, e.g. `2.7`. */
  serveProtocol?: string;
  /** What its Nix settings say (from `nix show-config`). */
  nix?: BuilderNixConfig;
  claims: MachineClaims;
  load?: { oneMinute: number; cpus: number; perCpu: number };
  store?: StoreSpace;
  /** The builder's own load against its limits: `reasons` non-empty means offload sends it no new job. */
  pressure?: BuilderPressure & { reasons: string[] };
  /** The keys its Nix signs builds with (secret-key-files), and whether the local store trusts each. */
  signingKeys?: KeyReport[];
  /** Its post-build-hook, which may sign after each build (signingKeys cannot say with what). */
  postBuildHook?: string;
  /** Whether its store takes unsigned paths from the ssh user (Nix requires it of a remote builder's user). */
  unsignedImports?: UnsignedImports;
  findings: Finding[];
  verdict: Verdict;
  reason?: string;
}

export interface CheckOptions {
  /** Each host must answer everything within this (connect included). */
  timeoutMs: number;
  /** The user's known_hosts files for machines without UserKnownHostsFile (default: ssh's). */
  knownHostsFiles?: string[];
  /** Global known_hosts files for machines without GlobalKnownHostsFile (default: ssh's). */
  globalKnownHostsFiles?: string[];
  storeSpaceLimits?: StoreSpaceLimits;
  /** The local store's side of copying outputs back; without it signing keys are reported but not judged. */
  localTrust?: LocalTrust;
}

/** Hosts checked at once: each holds an SSH connection and a few channels until it is done. */
const PARALLEL_CHECKS = 16;

/** Checks the machines in parallel (p-queue) over one pool; the result keeps the machines' order. */
export async function checkBuilders(machines: readonly Machine[], options: CheckOptions): Promise<BuilderCheck[]> {
  const knownHostsFiles = options.knownHostsFiles ?? defaultUserKnownHostsFiles();
  const globalKnownHostsFiles = options.globalKnownHostsFiles ?? [...DEFAULT_GLOBAL_KNOWN_HOSTS_FILES];
  const pool = new SshPool({ connectTimeoutMs: options.timeoutMs, knownHostsFiles, globalKnownHostsFiles });
  const queue = new PQueue({ concurrency: PARALLEL_CHECKS });
  try {
    // throwOnTimeout: tasks have no queue timeout, and it types each result as the check itself.
    return await Promise.all(
      machines.map((m) => queue.add(() => checkWithTimeout(pool, m, { ...options, knownHostsFiles, globalKnownHostsFiles }), { throwOnTimeout: true })),
    );
  } finally {
    await pool.closeAll();
  }
}

/** What is known so far; a timeout reports it as it stands. */
interface Draft extends Omit<BuilderCheck, 'verdict' | 'reason'> {
  /** Probe steps started but not finished, for the timeout message. */
  pending: Set<string>;
  /** `nix show-config --json`'s output, read again for the signing keys. */
  showConfigJson?: string;
}

async function checkWithTimeout(
  pool: SshPool,
  machine: Machine,
  options: CheckOptions & { knownHostsFiles: string[]; globalKnownHostsFiles: string[] },
): Promise<BuilderCheck> {
  const draft: Draft = {
    hostName: machine.hostName,
    address: machine.address,
    port: machine.port,
    ...(machine.sshUser !== undefined && { user: machine.sshUser }),
    authenticated: false,
    hostKey: { status: 'not checked', fingerprints: [] },
    claims: { systems: machine.systems, supportedFeatures: machine.supportedFeatures, mandatoryFeatures: machine.mandatoryFeatures },
    findings: [],
    pending: new Set(),
  };
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), options.timeoutMs);
  });
  const probing = probe(pool, machine, draft, options);
  // After a timeout the probe may still fail when the pool closes; that is already reported.
  probing.catch(() => undefined);
  try {
    const outcome = await Promise.race([probing, timedOut]);
    if (outcome === 'timeout') {
      const waiting = [...draft.pending].join(', ') || 'connecting';
      const snapshot: Draft = { ...draft, findings: [...draft.findings], pending: new Set() };
      snapshot.findings.unshift({
        severity: 'unusable',
        message: `no complete answer within ${options.timeoutMs / 1000} s (still waiting for: ${waiting})`,
      });
      return finish(snapshot);
    }
    return finish(draft);
  } finally {
    clearTimeout(timer);
  }
}

function finish(draft: Draft): BuilderCheck {
  const { pending: _pending, showConfigJson: _showConfigJson, ...rest } = draft;
  return { ...rest, ...verdictOf(draft.findings) };
}

async function probe(pool: SshPool, machine: Machine, draft: Draft, options: CheckOptions & { knownHostsFiles: string[]; globalKnownHostsFiles: string[] }): Promise<void> {
  const files = knownHostsFilesFor(machine, options.knownHostsFiles, options.globalKnownHostsFiles);
  const expected = await step(draft, 'known_hosts', async () => expectedHostKey(machine, loadKnownHosts(files), files));
  if (!expected) return;
  if (!(await connect(pool, machine, draft, expected))) return;
  await Promise.all([
    step(draft, NIX_VERSION_COMMAND, () => nixVersion(pool, machine, draft)),
    step(draft, 'serve greeting', () => serveProtocol(pool, machine, draft, options.timeoutMs)),
    (async () => {
      await step(draft, 'nix show-config', () => nixSettings(pool, machine, draft));
      await step(draft, 'signing keys', () => signingKeys(pool, machine, draft, options.localTrust));
    })(),
    pressureLook(pool, machine, draft, options.storeSpaceLimits),
  ]);
}

/** Runs one probe step; an OffloadError (lost connection, refused channel) becomes an unusable finding. */
async function step<T>(draft: Draft, name: string, run: () => Promise<T>): Promise<T | undefined> {
  draft.pending.add(name);
  try {
    return await run();
  } catch (error) {
    if (!(error instanceof OffloadError)) throw error;
    draft.findings.push({ severity: 'unusable', message: `${name}: ${error.message}` });
    return undefined;
  } finally {
    draft.pending.delete(name);
  }
}

async function connect(pool: SshPool, machine: Machine, draft: Draft, expected: ReturnType<typeof expectedHostKey>): Promise<boolean> {
  const trusted = { status: trustOf(expected), fingerprints: expected.fingerprints };
  const start = performance.now();
  draft.pending.add('connecting');
  try {
    await pool.connect(machine);
    Object.assign(draft, { reachable: true, authenticated: true, connectMs: Math.round(performance.now() - start), hostKey: trusted });
    return true;
  } catch (error) {
    if (!(error instanceof OffloadError)) throw error;
    draft.findings.push({ severity: 'unusable', message: error.message });
    if (error instanceof HostKeyMismatchError) {
      Object.assign(draft, { reachable: true, hostKey: { status: 'mismatch', fingerprints: [error.offeredFingerprint] } });
    } else if (error instanceof UnknownHostKeyError) {
      Object.assign(draft, { reachable: true, hostKey: { status: 'unknown', fingerprints: [`${error.keyType} ${error.offeredFingerprint}`] } });
    } else if (error instanceof AuthenticationError) {
      // ssh checks the host key before authentication, so it was accepted.
      Object.assign(draft, { reachable: true, hostKey: trusted });
    } else if (error instanceof HostUnreachableError || !(error instanceof KeyFileError)) {
      // A bad local key file stops the attempt before any connection: reachability stays unknown.
      draft.reachable = false;
    }
    return false;
  } finally {
    draft.pending.delete('connecting');
  }
}

/** How the key of a connection that succeeded was trusted: SshPool checks pinned, then known_hosts, then acceptance. */
function trustOf(expected: ReturnType<typeof expectedHostKey>): HostKeyStatus {
  if (expected.source === 'pinned') return 'pinned';
  if (expected.source === 'known_hosts') return 'known_hosts';
  return 'accepted unknown';
}

/** A probe's output is shown in tables and messages: no escape sequence of the builder's reaches the terminal. */
async function probeCommand(pool: SshPool, machine: Machine, command: string): Promise<ExecResult> {
  const result = await pool.exec(machine, command);
  const plain = (text: string) => filterAnsiEscapes(text, { keepColours: false });
  return { ...result, stdout: plain(result.stdout), stderr: plain(result.stderr) };
}

/** Why a probe command gave nothing usable: its exit and first stderr line (e.g. "nix-store: command not found"). */
function failure(command: string, result: ExecResult): string {
  if (result.code === 0) return `${command} printed unexpected output "${result.stdout.trim().slice(0, 100)}"`;
  const line = result.stderr.split('\n').map((l) => l.trim()).find((l) => l !== '');
  const how = result.code === null ? `was killed by ${result.signal ?? 'a signal'}` : `exited with ${result.code}`;
  return `${command} ${how}${line ? `: ${line.slice(0, 300)}` : ''}`;
}

async function nixVersion(pool: SshPool, machine: Machine, draft: Draft): Promise<void> {
  const result = await probeCommand(pool, machine, NIX_VERSION_COMMAND);
  const version = result.code === 0 ? parseNixVersion(result.stdout) : undefined;
  if (version !== undefined) {
    draft.nixVersion = version;
    return;
  }
  draft.findings.push({ severity: 'unusable', message: `no usable Nix over ssh: ${failure(NIX_VERSION_COMMAND, result)}` });
}

/**
 * The greeting, then, on the same channel, whether the store takes unsigned
 * paths from the ssh user: a refusal ends that server, and the channel is
 * closed after the probe anyway (see unsignedImportProbe.ts).
 */
async function serveProtocol(pool: SshPool, machine: Machine, draft: Draft, timeoutMs: number): Promise<void> {
  const transport = await pool.openServe(machine);
  try {
    const client = await ServeClient.open(transport, { handshakeTimeoutMs: timeoutMs });
    try {
      const version = client.serverVersion;
      draft.serveProtocol = `${(version >> 8) & 0xff}.${version & 0xff}`;
      await step(draft, 'unsigned import', async () => {
        draft.unsignedImports = await probeUnsignedImports(client);
        draft.findings.push(...builderImportFindings(machine.sshUser, draft.unsignedImports));
      });
    } finally {
      client.close();
    }
  } finally {
    transport.close();
  }
}

async function nixSettings(pool: SshPool, machine: Machine, draft: Draft): Promise<void> {
  const json = await probeCommand(pool, machine, SHOW_CONFIG_JSON_COMMAND);
  if (json.code === 0) draft.showConfigJson = json.stdout;
  let parsed = json.code === 0 ? parseShowConfigJson(json.stdout) : { ok: false as const, reason: failure(SHOW_CONFIG_JSON_COMMAND, json) };
  if (!parsed.ok) {
    const text = await probeCommand(pool, machine, SHOW_CONFIG_TEXT_COMMAND);
    if (text.code === 0) parsed = parseShowConfigText(text.stdout);
  }
  if (!parsed.ok) {
    draft.findings.push({
      severity: 'warning',
      message: `cannot read its Nix settings (${parsed.reason}), so its systems and features are unchecked`,
    });
    return;
  }
  draft.nix = parsed.config;
  draft.findings.push(...compareClaims(draft.claims, parsed.config));
}

/**
 * Load, pressure and store space come from the pressure probe's one remote
 * command (the shell reads /proc/loadavg and its own affinity, which is
 * what `nproc` counts, and one `df` names the store's filesystem), not from
 * a `cat`, an `nproc` and a `df` of their own: three processes fewer on
 * every builder checked. Each step still reports on its own. Through
 * probeCommand: df's filesystem and mount point are shown.
 */
async function pressureLook(pool: SshPool, machine: Machine, draft: Draft, limits: StoreSpaceLimits | undefined): Promise<void> {
  const look = probeCommand(pool, machine, PRESSURE_COMMAND).then((result) => ({ result, ...parsePressureLook(result.stdout) }));
  // Each step reports the probe's failure; the others' copies of it must not go unhandled meanwhile.
  look.catch(() => undefined);
  await Promise.all([
    step(draft, 'load', async () => load((await look).pressure, draft)),
    step(draft, 'pressure', async () => pressure((await look).pressure, machine, draft)),
    step(draft, 'store space', async () => storeSpace(await look, draft, limits)),
  ]);
}

function load(read: BuilderPressure, draft: Draft): void {
  const { load1, cpus } = read;
  if (load1 === undefined || cpus === undefined) {
    const why = load1 === undefined ? '/proc/loadavg could not be read' : 'its CPU count (Cpus_allowed_list in /proc/self/status) could not be read';
    draft.findings.push({ severity: 'note', message: `load unknown (${why})` });
    return;
  }
  const perCpu = Math.round((load1 / cpus) * 100) / 100;
  draft.load = { oneMinute: load1, cpus, perCpu };
  draft.findings.push(...loadFindings(perCpu));
}

function pressure(read: BuilderPressure, machine: Machine, draft: Draft): void {
  const reasons = pressureReasons(read, pressureLimits(machine.pressure));
  draft.pressure = { ...read, reasons };
  if (reasons.length > 0) {
    draft.findings.push({ severity: 'warning', message: `loaded (${reasons.join(', ')}): offload sends it no new job until it recovers` });
  }
}

function storeSpace(read: PressureLook & { result: ExecResult }, draft: Draft, limits: StoreSpaceLimits | undefined): void {
  if (read.store === undefined) {
    const line = read.result.stderr.split('\n').map((l) => l.trim()).find((l) => /\bdf\b/.test(l));
    draft.findings.push({ severity: 'note', message: `free store space unknown (df named no filesystem for /nix/store or /nix${line ? `: ${line.slice(0, 300)}` : ''})` });
    return;
  }
  draft.store = read.store;
  draft.findings.push(...storeSpaceFindings(read.store, limits));
}

async function signingKeys(pool: SshPool, machine: Machine, draft: Draft, local: LocalTrust | undefined): Promise<void> {
  // A Nix too old for show-config --json has no `nix key` either.
  if (draft.showConfigJson === undefined) return;
  const signing = await probeSigningKeys(pool, machine, draft.showConfigJson);
  if (!signing.ok) {
    draft.findings.push({ severity: 'note', message: `signing keys unknown: ${signing.reason}` });
    return;
  }
  const judged = local ?? { user: 'you', trustedPublicKeys: [] };
  draft.signingKeys = keyReports(signing.keys, judged);
  if (signing.postBuildHook !== undefined) draft.postBuildHook = signing.postBuildHook;
  if (local) draft.findings.push(...signingFindings(machine.hostName, draft.signingKeys, local, signing.postBuildHook));
}
