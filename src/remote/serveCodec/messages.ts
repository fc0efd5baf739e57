import type { Derivation } from '../../drv/derivation.js';
import { ExitCode, OffloadError } from '../../errors/offloadError.js';
import { assertStorePath, storePathProblem } from '../../storePath/storePath.js';
import { buildStatusName, type BuildResult } from '../buildResult.js';
import { filterAnsiEscapes } from '../terminalEscapes.js';
import { EXPORT_MAGIC } from '../exportStream.js';
import { ServeProtocolError } from './errors.js';
import type { ReplyCursor } from './cursor.js';
import type { ServeReader } from './parser.js';
import { compareBytes, Serializer } from './serializer.js';

/**
 * Every serve-protocol message offload sends or reads, as pure functions:
 * encoders return the exact bytes of one command, decoders read one reply
 * from a ServeReader and nothing more. Layouts follow Nix 2.8's opServe
 * (nix-store.cc) and legacy-ssh-store.cc; docs/serve-protocol.md lists them
 * and test/unit/serveMessages.test.ts pins each one's bytes per minor version,
 * as Nix 2.8 sent or accepted them.
 */

export const SERVE_MAGIC_1 = 0x390c9deb;
export const SERVE_MAGIC_2 = 0x5452eecb;
/**
 * We speak 2.6. The server gates every optional field on the *client's*
 * minor version (opServe reads `clientVersion`), so announcing 6 fixes the
 * layout: no keep-failed build option (minor 7), build results with
 * built outputs (minor 6), path infos with hash/ca/sigs (minor 4).
 */
export const CLIENT_VERSION = 0x206;
const MAJOR_MASK = 0xff00;
const MINOR_MASK = 0x00ff;

/** Command numbers from Nix's serve-protocol.hh. */
export const ServeCommand = {
  QueryValidPaths: 1,
  QueryPathInfos: 2,
  DumpStorePath: 3,
  ImportPaths: 4,
  ExportPaths: 5,
  BuildPaths: 6,
  QueryClosure: 7,
  BuildDerivation: 8,
  AddToStoreNar: 9,
} as const;

/** Longest store path a reply may hold (Linux PATH_MAX). */
export const MAX_PATH_LENGTH = 4096;

/** The minor version both sides understand: it fixes the layout of every message. */
export function sharedMinor(serverVersion: number): number {
  return Math.min(serverVersion & MINOR_MASK, CLIENT_VERSION & MINOR_MASK);
}

/** What a decoder needs to know about the connection. */
export interface ReplyContext {
  /** The minor version both sides understand (sharedMinor). */
  minor: number;
  /** Store directory every path in a reply must be under. */
  storeDir: string;
}

/** What `nix-store --serve` knows about a valid store path. */
export interface PathInfo {
  path: string;
  deriver?: string;
  references: string[];
  /** The serve protocol sends the NAR size here too (no compression). */
  downloadSize: number;
  narSize: number;
  /** `sha256:<base32>`; only from servers speaking minor ≥ 4. */
  narHash?: string;
  /** Content address, e.g. `fixed:r:sha256:...`; absent for input-addressed paths. */
  ca?: string;
  sigs: string[];
}

/** Limits a build-derivation command carries (opServe's getBuildSettings). */
export interface BuildSettings {
  /** Seconds without log output before the build is killed; 0 = no limit. */
  maxSilentTime?: number;
  /** Seconds the build may run; 0 = no limit. */
  buildTimeout?: number;
  /** Bytes of log before the build is killed; 0 = no limit. */
  maxLogSize?: number;
}

// --- client → server ----------------------------------------------------

export function encodeHello(): Buffer {
  return new Serializer(16).u64(SERVE_MAGIC_1).u64(CLIENT_VERSION).flush();
}

export function encodeQueryValidPaths(paths: readonly string[], options: { lock?: boolean; substitute?: boolean } = {}): Buffer {
  return new Serializer()
    .u64(ServeCommand.QueryValidPaths)
    .u64(options.lock ?? false)
    .u64(options.substitute ?? false)
    .strings(paths)
    .flush();
}

export function encodeQueryPathInfos(paths: readonly string[]): Buffer {
  return new Serializer().u64(ServeCommand.QueryPathInfos).strings(paths).flush();
}

export function encodeQueryClosure(paths: readonly string[], includeOutputs: boolean): Buffer {
  return new Serializer().u64(ServeCommand.QueryClosure).u64(includeOutputs).strings(paths).flush();
}

/** The command word only: an export stream follows it. */
export function encodeImportPaths(): Buffer {
  return new Serializer(8).u64(ServeCommand.ImportPaths).flush();
}

/** In an export stream, 1 comes before each path's NAR; 0 ends the stream. */
export function encodeExportItem(): Buffer {
  return new Serializer(8).u64(1).flush();
}

export function encodeExportEnd(): Buffer {
  return new Serializer(8).u64(0).flush();
}

/** What follows a path's NAR in an export stream: the magic, the path, its references and deriver, and 0 (no signature). */
export function encodeExportTrailer(info: Pick<PathInfo, 'path' | 'references' | 'deriver'>): Buffer {
  return new Serializer(256 + info.references.length * 96)
    .u64(EXPORT_MAGIC)
    .string(info.path)
    .strings(info.references)
    .string(info.deriver ?? '')
    .u64(0)
    .flush();
}

/** The NAR of one valid path follows, with no length prefix: its grammar says where it ends. */
export function encodeDumpStorePath(path: string): Buffer {
  return new Serializer(64 + path.length).u64(ServeCommand.DumpStorePath).string(path).flush();
}

/**
 * add-to-store-NAR (server minor ≥ 5): the path's info, then exactly
 * `narSize` bytes of NAR. The server restores the NAR while hashing it and
 * registers the path only when hash and size match the info: one path
 * streamed, never buffered (import-paths holds each whole NAR in memory).
 * Registration time 0 lets the server use its own clock; never "ultimate":
 * the path was not built by the receiving store.
 */
export function encodeAddToStoreNar(info: PathInfo): Buffer {
  if (info.narHash === undefined) throw new OffloadError(`Cannot send ${info.path}: its NAR hash is unknown.`, ExitCode.internal);
  return new Serializer(512 + info.references.length * 96)
    .u64(ServeCommand.AddToStoreNar)
    .string(info.path)
    .string(info.deriver ?? '')
    .string(info.narHash)
    .strings(info.references)
    .u64(0)
    .u64(info.narSize)
    .u64(false)
    .strings(info.sigs)
    .string(info.ca ?? '')
    .flush();
}

/** Server minor versions that accept add-to-store-NAR (legacy-ssh-store.cc's test). */
export function acceptsAddToStoreNar(serverVersion: number): boolean {
  return (serverVersion & MINOR_MASK) >= 5;
}

/** The second word is Nix's obsolete "sign" flag, always 0. */
export function encodeExportPaths(paths: readonly string[]): Buffer {
  return new Serializer().u64(ServeCommand.ExportPaths).u64(0).strings(paths).flush();
}

/**
 * build-derivation: the command, the derivation's path, the BasicDerivation
 * (`writeDerivation` in derivations.cc, maps and sets in std::map byte
 * order) and the build settings for `minor`. Paths are checked first, since
 * they reach the builder's store.
 */
export function encodeBuildDerivation(drvPath: string, drv: Derivation, settings: BuildSettings, minor: number, storeDir: string): Buffer {
  const message = new Serializer(4096).u64(ServeCommand.BuildDerivation).string(drvPath);
  const outputs = Object.entries(drv.outputs).sort(([a], [b]) => compareBytes(a, b));
  message.u64(outputs.length);
  for (const [name, output] of outputs) {
    if (output.path !== '') assertStorePath(output.path, `Output ${name} of ${drvPath}`, storeDir);
    message.string(name).string(output.path).string(output.hashAlgo).string(output.hash);
  }
  for (const src of drv.inputSrcs) assertStorePath(src, `An input source of ${drvPath}`, storeDir);
  message.strings([...drv.inputSrcs].sort(compareBytes));
  message.string(drv.system).string(drv.builder).strings(drv.args);
  message.stringMap(Object.entries(drv.env).sort(([a], [b]) => compareBytes(a, b)));
  return writeBuildSettings(message, settings, minor).flush();
}

/**
 * build-paths: the server builds each `<drv>!<output>,…` from the `.drv`
 * in its own store, then the build settings. A nix-daemon lets any user do
 * this, where it refuses build-derivation of an input-addressed derivation
 * to users outside its trusted-users.
 */
export function encodeBuildPaths(drvPath: string, outputs: readonly string[], settings: BuildSettings, minor: number, storeDir: string): Buffer {
  assertStorePath(drvPath, 'The derivation to build', storeDir);
  const wanted = [...outputs].sort(compareBytes);
  const message = new Serializer(512).u64(ServeCommand.BuildPaths).strings([wanted.length > 0 ? `${drvPath}!${wanted.join(',')}` : drvPath]);
  return writeBuildSettings(message, settings, minor).flush();
}

/** opServe's getBuildSettings, field by field as the client's minor gates them. */
function writeBuildSettings(message: Serializer, settings: BuildSettings, minor: number): Serializer {
  message.u64(seconds(settings.maxSilentTime, 'maxSilentTime')).u64(seconds(settings.buildTimeout, 'buildTimeout'));
  if (minor >= 2) message.u64(seconds(settings.maxLogSize, 'maxLogSize'));
  // Repeats must be 0 (newer servers refuse others); enforce-determinism as Nix's own client defaults it.
  if (minor >= 3) message.u64(0).u64(true);
  return message;
}

function seconds(value: number | undefined, name: string): number {
  const n = value ?? 0;
  if (!Number.isSafeInteger(n) || n < 0) throw new OffloadError(`Build option ${name} must be a whole number ≥ 0, not ${n}.`, ExitCode.internal);
  return n;
}

// --- server → client ----------------------------------------------------

/*
 * Each reply's layout is a synchronous function over a ReplyCursor; the
 * decode* functions hand it to the ServeReader, which runs it over the
 * buffered bytes and waits only when a reply straddles bytes still to come.
 */

/** The server's magic and version; `host` names it in the errors. */
export async function decodeHello(reader: ServeReader, host: string): Promise<number> {
  return reader.decode((cursor) => hello(cursor, host));
}

function hello(cursor: ReplyCursor, host: string): number {
  const magicBytes = cursor.bytes(8, 'the greeting');
  if (magicBytes.readBigUInt64LE(0) !== BigInt(SERVE_MAGIC_2)) {
    const preview = JSON.stringify(magicBytes.toString('latin1'));
    throw new ServeProtocolError(
      `${host} answered the serve-protocol greeting with ${preview} instead of Nix's magic number; ` +
        'is nix-store installed there, and does the login shell print to stdout?',
    );
  }
  const version = cursor.u64('the server version');
  if ((version & MAJOR_MASK) !== (CLIENT_VERSION & MAJOR_MASK)) {
    throw new ServeProtocolError(
      `nix-store --serve on ${host} speaks protocol ${version >> 8}.${version & MINOR_MASK}, ` +
        `which offload (protocol ${CLIENT_VERSION >> 8}.x) cannot talk to.`,
    );
  }
  return version;
}

/** A list of store paths (valid paths, a closure), each checked as it is read. */
export async function decodeStorePaths(reader: ServeReader, what: string, storeDir: string): Promise<string[]> {
  const count = await reader.count(what);
  const item = `an item of ${what}`;
  return reader.decodeItems((cursor, index) => (index < count ? storePath(cursor, item, storeDir) : undefined));
}

/** Path infos until the empty path that ends the list; invalid paths are simply absent. */
export async function decodePathInfos(reader: ServeReader, context: ReplyContext): Promise<PathInfo[]> {
  return reader.decodeItems((cursor) => pathInfo(cursor, context));
}

/** One path info, or undefined for the empty path that ends the list. */
function pathInfo(cursor: ReplyCursor, { minor, storeDir }: ReplyContext): PathInfo | undefined {
  const path = cursor.string('a path info', MAX_PATH_LENGTH);
  if (path === '') return undefined;
  checkReplyPath(cursor, path, storeDir);
  const deriver = cursor.string('a deriver', MAX_PATH_LENGTH);
  const references = storePaths(cursor, 'the references', storeDir);
  const info: PathInfo = {
    path,
    ...(deriver === '' ? {} : { deriver: checkReplyPath(cursor, deriver, storeDir) }),
    references,
    downloadSize: cursor.u64('a download size'),
    narSize: cursor.u64('a NAR size'),
    sigs: [],
  };
  if (minor >= 4) {
    info.narHash = cursor.string('a NAR hash', 1024);
    const ca = cursor.string('a content address', 1024);
    if (ca !== '') info.ca = ca;
    info.sigs = cursor.strings('the signatures', 1024, 4096);
  }
  return info;
}

function storePaths(cursor: ReplyCursor, what: string, storeDir: string): string[] {
  const count = cursor.count(what);
  const paths: string[] = [];
  if (count === 0) return paths;
  const item = `an item of ${what}`;
  for (let i = 0; i < count; i++) paths.push(storePath(cursor, item, storeDir));
  return paths;
}

function storePath(cursor: ReplyCursor, what: string, storeDir: string): string {
  return checkReplyPath(cursor, cursor.string(what, MAX_PATH_LENGTH), storeDir);
}

/**
 * build-paths' reply: 0, or Nix's exit status and its message. A local
 * store gives nix-build's status (100 + flags); through a nix-daemon Nix
 * 2.8 loses it and sends 1 for every failure, so only the message tells a
 * failed builder from a timeout.
 */
export async function decodeBuildPathsReply(reader: ServeReader): Promise<{ status: number; message: string }> {
  return reader.decode(buildPathsReply);
}

function buildPathsReply(cursor: ReplyCursor): { status: number; message: string } {
  const status = cursor.u64('the build status');
  if (status === 0) return { status, message: '' };
  // The message is Nix's whole error text, `error: ` prefix included; build-derivation's has none.
  const message = filterAnsiEscapes(cursor.string('the build error message'), { keepColours: false });
  return { status, message: message.replace(/^error: /, '') };
}

export async function decodeBuildResult(reader: ServeReader, minor: number): Promise<BuildResult> {
  return reader.decode((cursor) => buildResult(cursor, minor));
}

function buildResult(cursor: ReplyCursor, minor: number): BuildResult {
  const status = cursor.u64('the build status');
  const errorMsg = filterAnsiEscapes(cursor.string('the build error message'), { keepColours: false });
  const result: BuildResult = {
    status,
    statusName: buildStatusName(status),
    errorMsg,
    timesBuilt: 0,
    isNonDeterministic: false,
    startTime: 0,
    stopTime: 0,
    builtOutputs: new Map(),
  };
  if (minor >= 3) {
    result.timesBuilt = cursor.u64('the build count');
    result.isNonDeterministic = cursor.bool('the non-determinism flag');
    result.startTime = cursor.u64('the build start time');
    result.stopTime = cursor.u64('the build stop time');
  }
  if (minor >= 6) result.builtOutputs = cursor.stringMap('the built outputs');
  return result;
}

/** import-paths and add-to-store-NAR end with the server's 1 once the paths are in its store. */
export async function decodeImportAck(reader: ServeReader): Promise<void> {
  return reader.decode(importAck);
}

function importAck(cursor: ReplyCursor): void {
  const ack = cursor.u64('the import acknowledgement');
  if (ack !== 1) throw cursor.malformed(`the import acknowledgement is ${ack}, not 1`);
}

function checkReplyPath(cursor: ReplyCursor, path: string, storeDir: string): string {
  const problem = storePathProblem(path, storeDir);
  if (problem !== undefined) {
    throw cursor.malformed(`the server sent ${JSON.stringify(path.slice(0, 300))}, which is not a store path (${problem})`);
  }
  return path;
}
