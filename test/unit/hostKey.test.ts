import { describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/errors/offloadError.js';
import {
  checkHostKey,
  expectedKeyTypes,
  hostKeyAlgorithms,
  keyTypeOfBlob,
  publicHostKeyValue,
  publicKeyLine,
  sha256Fingerprint,
  type HostKeyPolicy,
} from '../../src/remote/hostKey.js';
import { keysForHost, knownHostsName, parseKnownHosts } from '../../src/remote/knownHosts.js';
import { HostKeyMismatchError, UnknownHostKeyError } from '../../src/remote/sshErrors.js';
import { blobOf, ECDSA, ED25519, pinOf, RSA } from './hostKeyFixtures.js';

const noKnown = { keys: [], revoked: [], authorities: [] };

function policy(overrides: Partial<HostKeyPolicy> = {}): HostKeyPolicy {
  return {
    host: 'aquamarine',
    address: '127.0.0.1',
    port: 2222,
    known: noKnown,
    knownHostsFiles: ['/root/.ssh/known_hosts'],
    acceptUnknown: false,
    ...overrides,
  };
}

function knownFrom(text: string, host = '127.0.0.1', port = 2222) {
  return keysForHost(parseKnownHosts(text, '/k'), [knownHostsName(host, port)]);
}

describe('key blobs', () => {
  it.each([
    ['ed25519', ED25519],
    ['ecdsa', ECDSA],
    ['rsa', RSA],
  ])('computes the %s fingerprint exactly as ssh-keygen -l prints it', (_, key) => {
    expect(sha256Fingerprint(blobOf(key.line))).toBe(key.fingerprint);
  });

  it('reads the key type from the blob itself', () => {
    expect(keyTypeOfBlob(blobOf(ED25519.line))).toBe('ssh-ed25519');
    expect(keyTypeOfBlob(blobOf(ECDSA.line))).toBe('ecdsa-sha2-nistp256');
    expect(keyTypeOfBlob(blobOf(RSA.line))).toBe('ssh-rsa');
    expect(keyTypeOfBlob(Buffer.from([0, 0, 0, 9, 1]))).toBeUndefined();
  });

  it('turns an offered key back into its public key line and machines-file pin', () => {
    expect(publicKeyLine(blobOf(RSA.line))).toBe(RSA.line);
    expect(publicHostKeyValue(blobOf(ED25519.line))).toBe(pinOf(ED25519.line));
  });
});

describe('pinned publicHostKey', () => {
  it('accepts the pinned key, with or without a comment in the pinned line', () => {
    const offered = blobOf(ED25519.line);
    expect(checkHostKey(offered, policy({ pinned: pinOf(ED25519.line) }))).toEqual({ accepted: true, via: 'pinned' });
    expect(checkHostKey(offered, policy({ pinned: pinOf(`${ED25519.line} root@aquamarine\n`) })).accepted).toBe(true);
  });

  it('refuses another key and shows both fingerprints', () => {
    const decision = checkHostKey(blobOf(ECDSA.line), policy({ pinned: pinOf(ED25519.line) }));
    expect(decision.accepted).toBe(false);
    const error = (decision as { error: Error }).error;
    expect(error).toBeInstanceOf(HostKeyMismatchError);
    expect((error as HostKeyMismatchError).exitCode).toBe(ExitCode.hostsUnusable);
    expect(error.message).toContain('aquamarine (127.0.0.1:2222)');
    expect(error.message).toContain(ECDSA.fingerprint);
    expect(error.message).toContain(ED25519.fingerprint);
    expect(error.message).toContain('publicHostKey');
  });

  it('decides alone: a known_hosts entry for the offered key does not override the pin', () => {
    const known = knownFrom(`[127.0.0.1]:2222 ${ECDSA.line}`);
    const decision = checkHostKey(blobOf(ECDSA.line), policy({ pinned: pinOf(ED25519.line), known }));
    expect(decision.accepted).toBe(false);
  });

  it('refuses everything when the pin is unreadable', () => {
    const decision = checkHostKey(blobOf(ED25519.line), policy({ pinned: 'not base64!' }));
    expect(decision.accepted).toBe(false);
  });
});

describe('known_hosts', () => {
  it('accepts a listed key', () => {
    const decision = checkHostKey(blobOf(ED25519.line), policy({ known: knownFrom(`[127.0.0.1]:2222 ${ED25519.line}`) }));
    expect(decision).toEqual({ accepted: true, via: 'known_hosts' });
  });

  it('refuses a different key for a listed host, naming the file and line', () => {
    const decision = checkHostKey(blobOf(RSA.line), policy({ known: knownFrom(`# c\n[127.0.0.1]:2222 ${ED25519.line}`) }));
    expect(decision.accepted).toBe(false);
    const error = (decision as { error: Error }).error;
    expect(error).toBeInstanceOf(HostKeyMismatchError);
    expect(error.message).toContain('/k:2');
    expect(error.message).toContain(RSA.fingerprint);
    expect(error.message).toContain(ED25519.fingerprint);
  });

  it('never accepts a @revoked key, even when it is also listed', () => {
    const text = `[127.0.0.1]:2222 ${ED25519.line}\n@revoked * ${ED25519.line}`;
    const decision = checkHostKey(blobOf(ED25519.line), policy({ known: knownFrom(text) }));
    expect(decision.accepted).toBe(false);
    expect((decision as { error: Error }).error.message).toContain('@revoked');
  });
});

describe('unknown host keys', () => {
  it('are refused with the pin to add and the ssh-keyscan command', () => {
    const decision = checkHostKey(blobOf(ED25519.line), policy());
    expect(decision.accepted).toBe(false);
    const error = (decision as { error: UnknownHostKeyError }).error;
    expect(error).toBeInstanceOf(UnknownHostKeyError);
    expect(error.exitCode).toBe(ExitCode.hostsUnusable);
    expect(error.publicHostKey).toBe(pinOf(ED25519.line));
    expect(error.message).toContain(`"publicHostKey": "${pinOf(ED25519.line)}"`);
    expect(error.message).toContain('ssh-keyscan -p 2222 -t ed25519 127.0.0.1 >> ~/.ssh/known_hosts');
    expect(error.message).toContain(ED25519.fingerprint);
    expect(error.message).toContain('/root/.ssh/known_hosts');
  });

  it('are accepted when ssh_config says StrictHostKeyChecking no', () => {
    expect(checkHostKey(blobOf(ED25519.line), policy({ acceptUnknown: true }))).toEqual({
      accepted: true,
      via: 'accepted unknown',
    });
  });

  it('but a changed key is refused even then', () => {
    const known = knownFrom(`[127.0.0.1]:2222 ${ECDSA.line}`);
    expect(checkHostKey(blobOf(ED25519.line), policy({ acceptUnknown: true, known })).accepted).toBe(false);
  });
});

describe('host key algorithm order', () => {
  it('puts the expected key type first and keeps the rest', () => {
    const rsaFirst = hostKeyAlgorithms(['ssh-rsa']);
    expect(rsaFirst.slice(0, 3)).toEqual(['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']);
    expect(rsaFirst).toContain('ssh-ed25519');
    expect(new Set(rsaFirst).size).toBe(rsaFirst.length);
    expect(hostKeyAlgorithms([])[0]).toBe('ssh-ed25519');
    expect(hostKeyAlgorithms(['sk-ssh-ed25519@openssh.com'])[0]).toBe('ssh-ed25519');
  });

  it('takes the expected types from the pin, else from known_hosts', () => {
    const known = knownFrom(`[127.0.0.1]:2222 ${RSA.line}`);
    expect(expectedKeyTypes({ pinned: pinOf(ECDSA.line), known })).toEqual(['ecdsa-sha2-nistp256']);
    expect(expectedKeyTypes({ known })).toEqual(['ssh-rsa']);
  });
});
