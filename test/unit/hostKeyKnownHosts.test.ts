import { describe, expect, it } from 'vitest';
import { keysForHost, knownHostsName, parseKnownHosts, patternsMatch } from '../../src/remote/knownHosts.js';
import { ECDSA, ED25519, HASHED_KNOWN_HOSTS, RSA } from './hostKeyFixtures.js';

describe('knownHostsName', () => {
  it('uses the bare host on port 22 and [host]:port elsewhere, lower-cased', () => {
    expect(knownHostsName('Builder.Example.org', 22)).toBe('builder.example.org');
    expect(knownHostsName('127.0.0.1', 2222)).toBe('[127.0.0.1]:2222');
  });
});

describe('parseKnownHosts', () => {
  it('reads patterns, type, key and markers, skipping comments, blanks and broken lines', () => {
    const text = [
      '# comment',
      '',
      `a,b ${ED25519.line} a comment`,
      `@revoked * ${RSA.line}`,
      '@cert-authority *.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5',
      'onlyonefield',
      'host ssh-ed25519 not!base64',
    ].join('\n');
    const entries = parseKnownHosts(text, '/etc/ssh/ssh_known_hosts');
    expect(entries.map((e) => [e.marker, e.patterns, e.keyType, e.source])).toEqual([
      [undefined, 'a,b', 'ssh-ed25519', '/etc/ssh/ssh_known_hosts:3'],
      ['@revoked', '*', 'ssh-rsa', '/etc/ssh/ssh_known_hosts:4'],
      ['@cert-authority', '*.example.org', 'ssh-ed25519', '/etc/ssh/ssh_known_hosts:5'],
    ]);
    expect(entries[0]!.blob.toString('base64')).toBe(ED25519.line.split(' ')[1]);
  });
});

describe('patternsMatch', () => {
  it('matches plain names case-insensitively, in a comma list', () => {
    expect(patternsMatch('Ruby,kana', 'ruby')).toBe(true);
    expect(patternsMatch('ruby,kana', 'kana')).toBe(true);
    expect(patternsMatch('ruby,kana', 'aquamarine')).toBe(false);
  });

  it('supports * and ? wildcards and ! negation', () => {
    expect(patternsMatch('*.example.org', 'b1.example.org')).toBe(true);
    expect(patternsMatch('*.example.org', 'example.org')).toBe(false);
    expect(patternsMatch('b?.example.org', 'b1.example.org')).toBe(true);
    expect(patternsMatch('b?.example.org', 'b12.example.org')).toBe(false);
    expect(patternsMatch('*.example.org,!evil.example.org', 'evil.example.org')).toBe(false);
    expect(patternsMatch('*.example.org,!evil.example.org', 'good.example.org')).toBe(true);
  });

  it('treats [host]:port as its own name: a port-22 entry does not cover another port', () => {
    expect(patternsMatch('[127.0.0.1]:2222', '[127.0.0.1]:2222')).toBe(true);
    expect(patternsMatch('127.0.0.1', '[127.0.0.1]:2222')).toBe(false);
    expect(patternsMatch('[127.0.0.1]:2222', '127.0.0.1')).toBe(false);
    expect(patternsMatch('[127.0.0.1]:*', '[127.0.0.1]:40000')).toBe(true);
  });

  it('matches hashed names written by ssh-keygen -H', () => {
    const [ed, ec] = parseKnownHosts(HASHED_KNOWN_HOSTS, '/k');
    expect(patternsMatch(ed!.patterns, '[127.0.0.1]:2222')).toBe(true);
    expect(patternsMatch(ed!.patterns, '127.0.0.1')).toBe(false);
    expect(patternsMatch(ed!.patterns, '[127.0.0.1]:2223')).toBe(false);
    expect(patternsMatch(ec!.patterns, 'builder.example.org')).toBe(true);
    expect(patternsMatch(ec!.patterns, 'builder.example.com')).toBe(false);
  });

  it('rejects malformed hashed names', () => {
    expect(patternsMatch('|2|abc|def', 'x')).toBe(false);
    expect(patternsMatch('|1|', 'x')).toBe(false);
  });
});

describe('keysForHost', () => {
  const text = [
    HASHED_KNOWN_HOSTS,
    `aquamarine ${RSA.line}`,
    `@cert-authority * ${ECDSA.line}`,
    `@revoked [127.0.0.1]:2222 ${RSA.line}`,
  ].join('\n');
  const entries = parseKnownHosts(text, '/k');

  it('collects keys for any of the names (alias or address), ignoring CA lines', () => {
    const known = keysForHost(entries, ['aquamarine', knownHostsName('127.0.0.1', 2222)]);
    expect(known.keys.map((e) => e.keyType)).toEqual(['ssh-ed25519', 'ssh-rsa']);
    expect(known.revoked.map((e) => e.source)).toEqual(['/k:5']);
  });

  it('finds nothing for an unlisted host', () => {
    const known = keysForHost(entries, ['ruby', '[127.0.0.1]:2223']);
    expect([known.keys, known.revoked]).toEqual([[], []]);
    // "@cert-authority *" names every host: kept apart, to explain why a host is unknown.
    expect(known.authorities.map((e) => e.source)).toEqual(['/k:4']);
  });
});
