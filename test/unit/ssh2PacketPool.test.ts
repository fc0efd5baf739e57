import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type AddressInfo, type Server as NetServer } from 'node:net';
import { createRequire } from 'node:module';
import { Client, Server, utils, type ClientChannel } from 'ssh2';
import { afterEach, describe, expect, it } from 'vitest';

const require = createRequire(import.meta.url);
const MiB = 1024 * 1024;

/**
 * patches/ssh2+1.17.0.patch (applied by `npm ci`'s postinstall) makes ssh2's
 * client reuse the buffers of outgoing packets once the socket has written
 * them. A buffer reused too early would corrupt what the server receives
 * (or fail its MAC check): an in-process ssh2 server hashes what arrives.
 * The client reaches it through a relay on a Unix socket (small kernel
 * buffers, unlike loopback TCP's) that stalls its reads now and then, so
 * that the client's writes wait in Node with packets still unsent: the case
 * a too-early reuse would break.
 */
describe('ssh2 outgoing packet pool (patches/ssh2+1.17.0.patch)', () => {
  let server: Server | undefined;
  let relay: NetServer | undefined;
  let client: Client | undefined;
  let dir: string | undefined;
  afterEach(async () => {
    client?.destroy();
    await new Promise<void>((resolve) => (relay ? relay.close(() => resolve()) : resolve()));
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    if (dir) await rm(dir, { recursive: true, force: true });
    server = relay = client = dir = undefined;
  });

  // A checkout whose node_modules was copied rather than installed has the
  // library unpatched (correct, only slower); CI installs with `npm ci`.
  it.runIf(process.env.CI === 'true')('is applied by npm ci', () => {
    const crypto = require('ssh2/lib/protocol/crypto.js') as Record<string, unknown>;
    expect(typeof crypto.isPooledPacket).toBe('function');
    expect(typeof crypto.releasePooledPacket).toBe('function');
  });

  it('an upload through reused packet buffers arrives byte for byte, for every cipher the client may negotiate', async () => {
    const hostKey = utils.generateKeyPairSync('ed25519');
    const serverErrors: string[] = [];
    server = new Server({ hostKeys: [hostKey.private] }, (connection) => {
      // A corrupted packet fails the server's MAC check: it drops the connection.
      connection.on('error', (error: Error) => serverErrors.push(error.message));
      connection.on('authentication', (context) => context.accept());
      connection.on('ready', () =>
        connection.on('session', (acceptSession) =>
          acceptSession().on('exec', (acceptExec) => {
            const stream = acceptExec();
            const hash = createHash('sha256');
            let bytes = 0;
            stream.on('data', (data: Buffer) => {
              hash.update(data);
              bytes += data.length;
            });
            stream.on('end', () => {
              stream.write(`${bytes} ${hash.digest('hex')}`);
              stream.exit(0);
              stream.end();
            });
          }),
        ),
      );
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', () => resolve()));
    const serverPort = (server.address() as AddressInfo).port;
    relay = createServer((downstream) => {
      const upstream = connect(serverPort, '127.0.0.1');
      upstream.pipe(downstream);
      let sinceStall = 0;
      downstream.on('data', (data: Buffer) => {
        if (!upstream.write(data)) downstream.pause();
        sinceStall += data.length;
        if (sinceStall < 512 * 1024) return;
        sinceStall = 0;
        downstream.pause();
        setTimeout(() => downstream.resume(), 10);
      });
      upstream.on('drain', () => downstream.resume());
      downstream.on('end', () => upstream.end());
      downstream.on('close', () => upstream.destroy());
      upstream.on('close', () => downstream.destroy());
      downstream.on('error', () => upstream.destroy());
      upstream.on('error', () => downstream.destroy());
    });
    dir = await mkdtemp(join(tmpdir(), 'ssh2-packet-pool-'));
    const relayPath = join(dir, 'relay.sock');
    await new Promise<void>((resolve) => relay!.listen(relayPath, () => resolve()));

    for (const cipher of ['aes128-gcm@openssh.com', 'chacha20-poly1305@openssh.com', 'aes128-ctr'] as const) {
      client = new Client();
      await new Promise<void>((resolve, reject) => {
        client!.once('ready', () => resolve()).once('error', reject);
        client!.connect({ sock: connect(relayPath), username: 'test', hostVerifier: () => true, algorithms: { cipher: [cipher] } });
      });
      const channel = await new Promise<ClientChannel>((resolve, reject) => client!.exec('sink', (error, opened) => (error ? reject(error) : resolve(opened))));
      const reply: Buffer[] = [];
      channel.on('data', (data: Buffer) => reply.push(data));
      const closed = new Promise<void>((resolve) => channel.on('close', () => resolve()));
      const lost = new Promise<never>((_, reject) => client!.once('close', () => reject(new Error(`${cipher}: connection lost (server: ${serverErrors.join('; ')})`))));

      // Chunks of odd sizes, some above the 32 KiB packet size, sent as fast as the window allows.
      const sent = createHash('sha256');
      let total = 0;
      while (total < 24 * MiB) {
        const chunk = randomBytes(1 + Math.floor(Math.random() * 100_000));
        sent.update(chunk);
        total += chunk.length;
        if (!channel.write(chunk)) await Promise.race([new Promise((resolve) => channel.once('drain', resolve)), lost]);
      }
      channel.end();
      await Promise.race([closed, lost]);
      expect(Buffer.concat(reply).toString(), cipher).toBe(`${total} ${sent.digest('hex')}`);
      client.end();
    }
  });
});
