/**
 * Records what the real `nix-store --serve --write` (Nix 2.8 here) answers to
 * each of offload's serve-protocol requests, for every client minor version
 * the codec supports, into fixtures/serve/nix-2.8.json. The byte tables of
 * test/unit/serveMessages.test.ts are these recordings: each request is
 * offload's encoder output that Nix accepted, each reply the bytes Nix sent.
 *
 *   npx tsx scripts/capture-serve-replies.ts [REQUEST...]
 *
 * With request names (e.g. dumpStorePath), only those are recorded and
 * every other recording in the file is kept as it is.
 *
 * Runs the local Nix of the tests (scripts/cluster/localNix.ts) on the
 * machine's store; it adds two small files and builds two tiny derivations
 * per minor there (run it in a mount namespace with an empty /nix to record
 * fresh builds again: `unshare -m sh -c 'mount --bind DIR /nix && npx tsx …'`). Store paths follow from their content, so the recordings hold the
 * same paths on every machine; build start and stop times are the run's own.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import type { Derivation } from '../src/drv/derivation.js';
import { parseDrv } from '../src/drv/parseDrv.js';
import { Serializer } from '../src/remote/serveCodec/serializer.js';
import { ServeReader } from '../src/remote/serveCodec/parser.js';
import { probePath } from '../src/remote/unsignedImportProbe.js';
import {
  decodeBuildPathsReply,
  decodeBuildResult,
  decodeImportAck,
  decodePathInfos,
  decodeStorePaths,
  encodeAddToStoreNar,
  encodeBuildDerivation,
  encodeBuildPaths,
  encodeDumpStorePath,
  encodeQueryClosure,
  encodeQueryPathInfos,
  encodeQueryValidPaths,
  SERVE_MAGIC_1,
} from '../src/remote/serveCodec/messages.js';
import { NarScanner } from '../src/remote/narScanner.js';
import { localNixEnv } from './cluster/localNix.js';

const root = join(import.meta.dirname, '..');
const env = localNixEnv();
const MINORS = [2, 3, 4, 6];
const MISSING = '/nix/store/00000000000000000000000000000000-not-there';

const only = new Set(process.argv.slice(2));
const target = join(root, 'fixtures/serve/nix-2.8.json');
const previous = only.size > 0 ? (JSON.parse(readFileSync(target, 'utf8')) as { minors: Record<string, Record<string, unknown>> }) : undefined;
const source = execFileSync('nix-store', ['--add', join(root, 'fixtures/serve/captured.txt')], { env, encoding: 'utf8' }).trim();
/** One derivation per minor, so each recording holds a real build (a second capture finds them valid). */
function instantiate(minor: number, kind = 'capture'): { drvPath: string; drvText: string; drv: Derivation } {
  const expression = `derivation { name = "serve-${kind}-${minor}"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo captured > $out" ]; }`;
  const drvPath = execFileSync('nix-instantiate', ['--expr', expression], { env, encoding: 'utf8' }).trim();
  const drvText = readFileSync(drvPath, 'utf8');
  return { drvPath, drvText, drv: parseDrv(drvText, drvPath) };
}

/**
 * The server's answer to `request` after a greeting announcing 2.`minor`.
 * stdin stays open until the reply has been read (a hang-up interrupts a
 * build), so the codec's decoder says where the reply ends; the bytes
 * recorded are the raw ones.
 */
async function exchange(minor: number, request: Buffer, readReply: (reader: ServeReader) => Promise<unknown>): Promise<Buffer> {
  const child = spawn('nix-store', ['--serve', '--write'], { env, stdio: ['pipe', 'pipe', 'ignore'] });
  const out: Buffer[] = [];
  const tap = new PassThrough();
  child.stdout.on('data', (chunk: Buffer) => {
    out.push(chunk);
    tap.write(chunk);
  });
  child.stdout.on('end', () => tap.end());
  const reader = new ServeReader(tap, 'nix-store --serve');
  child.stdin.write(Buffer.concat([new Serializer().u64(SERVE_MAGIC_1).u64(0x200 | minor).flush(), request]));
  await reader.bytes(16, 'the greeting');
  await readReply(reader);
  child.stdin.end();
  await new Promise((resolve) => child.on('close', resolve));
  // The greeting's reply (magic, version) comes first: 16 bytes.
  return Buffer.concat(out).subarray(16);
}

const greeting = async (): Promise<Buffer> => {
  const child = spawn('nix-store', ['--serve', '--write'], { env, stdio: ['pipe', 'pipe', 'inherit'] });
  const out: Buffer[] = [];
  child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
  child.stdin.end(new Serializer().u64(SERVE_MAGIC_1).u64(0x206).flush());
  await new Promise((resolve) => child.on('close', resolve));
  return Buffer.concat(out);
};

/** dump-store-path's reply has no length: the NAR's grammar says where it ends. */
async function readNar(reader: ServeReader): Promise<void> {
  for await (const _ of reader.scan(new NarScanner(), 'the NAR'));
}

const nixVersion = execFileSync('nix-store', ['--version'], { env, encoding: 'utf8' }).trim();
const recordings: Record<string, unknown> = {
  about: `Recorded from ${nixVersion} by scripts/capture-serve-replies.ts; hex bytes.`,
  source,
  greeting: (await greeting()).toString('hex'),
  minors: {},
};
for (const minor of MINORS) {
  const { drvPath, drvText, drv } = instantiate(minor);
  const built = instantiate(minor, 'paths');
  const probe = probePath();
  const context = { minor, storeDir: '/nix/store' };
  const requests: Record<string, [Buffer, (reader: ServeReader) => Promise<unknown>]> = {
    queryValidPaths: [encodeQueryValidPaths([source, MISSING], { lock: false, substitute: false }), (r) => decodeStorePaths(r, 'paths', '/nix/store')],
    queryPathInfos: [encodeQueryPathInfos([source, MISSING]), (r) => decodePathInfos(r, context)],
    queryClosure: [encodeQueryClosure([source], false), (r) => decodeStorePaths(r, 'paths', '/nix/store')],
    buildDerivation: [
      encodeBuildDerivation(drvPath, drv, { maxSilentTime: 60, buildTimeout: 120, maxLogSize: 0 }, minor, '/nix/store'),
      (r) => decodeBuildResult(r, minor),
    ],
    addToStoreNar: [Buffer.concat([encodeAddToStoreNar(probe.info), probe.nar]), (r) => decodeImportAck(r)],
    buildPaths: [encodeBuildPaths(built.drvPath, ['out'], { maxSilentTime: 60, buildTimeout: 120, maxLogSize: 0 }, minor, '/nix/store'), (r) => decodeBuildPathsReply(r)],
    dumpStorePath: [encodeDumpStorePath(source), readNar],
  };
  const entry: Record<string, unknown> = previous?.minors[minor] ?? { drvPath, drv: drvText, buildPathsDrvPath: built.drvPath };
  for (const [name, [request, readReply]] of Object.entries(requests)) {
    if (only.size > 0 && !only.has(name)) continue;
    entry[name] = { request: request.toString('hex'), reply: (await exchange(minor, request, readReply)).toString('hex') };
  }
  (recordings.minors as Record<string, unknown>)[minor] = entry;
}
mkdirSync(join(root, 'fixtures/serve'), { recursive: true });
writeFileSync(target, `${JSON.stringify(recordings, null, 2)}\n`);
console.log(`wrote fixtures/serve/nix-2.8.json (${nixVersion})`);
