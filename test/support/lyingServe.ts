/**
 * A lying builder's `nix-store`: run on a test builder in place of the real
 * one (installLyingServe puts it first on the builder's PATH), it passes
 * `nix-store --serve --write` through to the real Nix and changes its
 * replies as `OFFLOAD_LIE` says:
 * - `add`: every closure reply gains a path nobody asked for (`…-glibc-2.39`);
 * - `rename`: every closure reply names `…-glibc-2.39` in place of its last path;
 * - `corrupt`: one byte of each NAR's first file contents is flipped, so the
 *   NAR no longer has the hash its path info gives.
 * Any other invocation runs the real nix-store unchanged.
 */
import { spawn } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { NarScanner } from '../../src/remote/narScanner.js';
import { scanExportStream } from '../../src/remote/exportStream.js';
import { ServeReader } from '../../src/remote/serveCodec/parser.js';
import { Serializer } from '../../src/remote/serveCodec/serializer.js';

const REAL = '/usr/bin/nix-store';
const lie = process.env.OFFLOAD_LIE ?? '';
const args = process.argv.slice(2);

/** The path the lies bring in. */
export const INJECTED_NAME = 'glibc-2.39';

if (args.join(' ') !== '--serve --write') {
  const real = spawn(REAL, args, { stdio: 'inherit' });
  real.on('exit', (code) => process.exit(code ?? 1));
} else {
  const server = spawn(REAL, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  server.on('exit', (code) => process.exit(code ?? 0));
  const copy = new PassThrough();
  process.stdin.pipe(server.stdin);
  process.stdin.pipe(copy);
  const replies: Array<(kind: number) => void> = [];
  const pending: number[] = [];
  const expect = (kind: number) => {
    const wake = replies.shift();
    if (wake) wake(kind);
    else pending.push(kind);
  };
  const nextReply = () => new Promise<number>((resolve) => (pending.length > 0 ? resolve(pending.shift()!) : replies.push(resolve)));
  let minor = 0;
  void readCommands(new ServeReader(copy, 'offload'), expect, (m) => (minor = m));
  void answer(new ServeReader(server.stdout, 'nix-store'), nextReply, () => minor);
}

/** Follows what the client sends, only to know which reply comes next. */
async function readCommands(reader: ServeReader, expect: (kind: number) => void, setMinor: (minor: number) => void): Promise<void> {
  await reader.u64('magic');
  const clientVersion = await reader.u64('version');
  const clientMinor = clientVersion & 0xff;
  expect(0);
  for (;;) {
    if (await reader.atEnd()) return;
    const cmd = await reader.u64('command');
    if (cmd === 1) {
      await reader.u64('lock');
      await reader.u64('substitute');
      await reader.strings('paths');
    } else if (cmd === 2) await reader.strings('paths');
    else if (cmd === 3) await reader.string('path');
    else if (cmd === 4) for await (const _ of scanExportStream(reader)) void _;
    else if (cmd === 5) {
      await reader.u64('sign');
      await reader.strings('paths');
    } else if (cmd === 7) {
      await reader.u64('include outputs');
      await reader.strings('paths');
    } else if (cmd === 8) {
      await reader.string('drv path');
      const outputs = await reader.u64('outputs');
      for (let i = 0; i < outputs * 4; i++) await reader.string('output field');
      await reader.strings('input sources');
      await reader.string('platform');
      await reader.string('builder');
      await reader.strings('args');
      await reader.stringMap('env');
      const options = 2 + (clientMinor >= 2 ? 1 : 0) + (clientMinor >= 3 ? 2 : 0) + (clientMinor >= 7 ? 1 : 0);
      for (let i = 0; i < options; i++) await reader.u64('build option');
    } else if (cmd === 9) {
      for (const field of ['path', 'deriver', 'hash']) await reader.string(field);
      await reader.strings('references');
      await reader.u64('registration time');
      const narSize = await reader.u64('nar size');
      await reader.u64('ultimate');
      await reader.strings('sigs');
      await reader.string('ca');
      for await (const _ of reader.passthrough(narSize, 'nar')) void _;
    } else throw new Error(`lying serve: unknown command ${cmd}`);
    setMinor(clientMinor);
    expect(cmd);
  }
}

/** Passes the server's replies on, re-encoded, with the lie in them. */
async function answer(reader: ServeReader, next: () => Promise<number>, minorOf: () => number): Promise<void> {
  const out = process.stdout;
  const send = (bytes: Buffer) => new Promise<void>((resolve) => (out.write(bytes) ? resolve() : out.once('drain', () => resolve())));
  for (;;) {
    const kind = await next();
    const minor = Math.min(minorOf(), 7);
    const s = new Serializer();
    if (kind === 0) {
      s.u64(await reader.u64('magic')).u64(await reader.u64('version'));
    } else if (kind === 1) {
      s.strings(await reader.strings('valid'));
    } else if (kind === 7) {
      s.strings(lieAbout(await reader.strings('closure')));
    } else if (kind === 2) {
      for (;;) {
        const path = await reader.string('path');
        s.string(path);
        if (path === '') break;
        s.string(await reader.string('deriver')).strings(await reader.strings('references'));
        s.u64(await reader.u64('download size')).u64(await reader.u64('nar size'));
        if (minor >= 4) s.string(await reader.string('hash')).string(await reader.string('ca')).strings(await reader.strings('sigs'));
      }
    } else if (kind === 3) {
      let offset = 0;
      for await (const slice of reader.scan(new NarScanner(), 'nar')) {
        let bytes = slice;
        // Byte 96 of a NAR whose root is a regular file is its first byte of contents.
        if (lie === 'corrupt' && offset <= 96 && offset + slice.length > 96) {
          bytes = Buffer.from(slice);
          bytes[96 - offset] = bytes[96 - offset]! ^ 1;
        }
        offset += slice.length;
        await send(bytes);
      }
      continue;
    } else if (kind === 4 || kind === 9) {
      s.u64(await reader.u64('ack'));
    } else if (kind === 5) {
      for await (const chunk of scanExportStream(reader)) await send(chunk);
      continue;
    } else if (kind === 8) {
      s.u64(await reader.u64('status')).string(await reader.string('error'));
      if (minor >= 3) for (let i = 0; i < 4; i++) s.u64(await reader.u64('times'));
      if (minor >= 6) s.stringMap(await reader.stringMap('built outputs'));
    }
    await send(s.flush());
  }
}

function lieAbout(closure: string[]): string[] {
  if (closure.length === 0) return closure;
  const hashPart = closure[closure.length - 1]!.slice('/nix/store/'.length, '/nix/store/'.length + 32);
  const injected = `/nix/store/${hashPart.split('').reverse().join('')}-${INJECTED_NAME}`;
  if (lie === 'add') return [...closure, injected];
  if (lie === 'rename') return [...closure.slice(0, -1), injected];
  return closure;
}
