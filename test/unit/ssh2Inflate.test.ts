import { createHash, randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { Client, Server, utils, type ClientChannel } from 'ssh2';
import { afterEach, describe, expect, it } from 'vitest';

const require = createRequire(import.meta.url);
const MiB = 1024 * 1024;

/**
 * patches/ssh2+1.17.0.patch makes ssh2's client inflate each compressed
 * packet into a slice of one 256 KiB output buffer (a fresh one once less
 * than a packet's room is left) instead of zlib's 16 KiB chunks joined by a
 * copy. A slice handed out twice, or a buffer written again while a slice of
 * it is still held, would corrupt what arrives: an in-process ssh2 server
 * sends a hashed stream over a compressed link and the client checks it.
 */
describe('ssh2 inflate (patches/ssh2+1.17.0.patch)', () => {
  let server: Server | undefined;
  let client: Client | undefined;
  afterEach(async () => {
    client?.destroy();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    server = client = undefined;
  });

  it.runIf(process.env.CI === 'true')('is applied by npm ci', () => {
    const { ZlibPacketReader } = require('ssh2/lib/protocol/zlib.js') as { ZlibPacketReader: new () => { _zlib: { _chunkSize: number }; cleanup(): void } };
    const reader = new ZlibPacketReader();
    expect(reader._zlib._chunkSize).toBe(256 * 1024);
    reader.cleanup();
  });

  it('a download over a compressed link arrives byte for byte, compressible and not, held until its end', async () => {
    const hostKey = utils.generateKeyPairSync('ed25519');
    const compress = ['zlib@openssh.com', 'zlib'] as const;
    const sent = createHash('sha256');
    let total = 0;
    server = new Server({ hostKeys: [hostKey.private], algorithms: { compress: [...compress] } }, (connection) => {
      connection.on('error', () => undefined);
      connection.on('authentication', (context) => context.accept());
      connection.on('ready', () =>
        connection.on('session', (acceptSession) =>
          acceptSession().on('exec', (acceptExec) => {
            const stream = acceptExec();
            // Odd sizes, some beyond the 32 KiB packet: random bytes (which zlib cannot shrink) and runs it shrinks a lot.
            const pump = () => {
              while (total < 12 * MiB) {
                const size = 1 + Math.floor(Math.random() * 100_000);
                const chunk = Math.random() < 0.5 ? randomBytes(size) : Buffer.alloc(size, total % 251);
                sent.update(chunk);
                total += chunk.length;
                if (!stream.write(chunk)) return void stream.once('drain', pump);
              }
              stream.exit(0);
              stream.end();
            };
            pump();
          }),
        ),
      );
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', () => resolve()));
    const port = (server.address() as AddressInfo).port;
    client = new Client();
    const negotiated = new Promise<string>((resolve) => client!.once('handshake', (info: { cs: { compress: string } }) => resolve(info.cs.compress)));
    await new Promise<void>((resolve, reject) => {
      client!.once('ready', () => resolve()).once('error', reject);
      client!.connect({ host: '127.0.0.1', port, username: 'test', hostVerifier: () => true, algorithms: { compress: [...compress] } });
    });
    expect(compress).toContain(await negotiated);
    const channel = await new Promise<ClientChannel>((resolve, reject) => client!.exec('source', (error, opened) => (error ? reject(error) : resolve(opened))));
    // Every chunk is kept until the end, as a consumer that holds slices may: none may change meanwhile.
    const received: Buffer[] = [];
    channel.on('data', (data: Buffer) => received.push(data));
    await new Promise<void>((resolve) => channel.on('close', () => resolve()));
    const whole = Buffer.concat(received);
    expect(whole.length).toBe(total);
    expect(createHash('sha256').update(whole).digest('hex')).toBe(sent.digest('hex'));
  });
});
