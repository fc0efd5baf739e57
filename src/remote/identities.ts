import { existsSync, readFileSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import ssh2, { type AnyAuthMethod, type BaseAgent, type ParsedKey } from 'ssh2';
import type { SshEndpoint } from '../config/machine.js';
import { checkKeyFile } from '../config/keyFile.js';
import { sha256Fingerprint } from './hostKey.js';

// ssh2 is CommonJS: these exist only on the default export under ESM.
const { utils, OpenSSHAgent } = ssh2;
const AgentBase = (ssh2 as unknown as { BaseAgent: new () => BaseAgent<ParsedKey> }).BaseAgent;

/**
 * The keys offered to a builder, in OpenSSH's order (sshconnect2.c
 * pubkey_prepare): agent keys that an identity file names, then the agent's
 * other keys (not with IdentitiesOnly), then identity files the agent does
 * not hold. An identity file that cannot be used (missing, unreadable, open
 * to others, passphrase-protected and not in the agent, a type ssh2 cannot
 * sign with) is skipped with a debug line, as ssh skips it; the host fails
 * only when nothing authenticates, and the error then says what was offered
 * and why each skipped file was not.
 */
export interface ClientAuth {
  user: string;
  /** Identity files whose private key is offered directly (paths only, for messages). */
  keyFiles: string[];
  methods: AnyAuthMethod[];
  /** What is offered, in order: `ssh-agent key <comment or fingerprint>`, `key file <path>`. */
  offered: string[];
  /** Identity files not offered, each `<path> (<why>)`. */
  skipped: string[];
}

export interface IdentityOptions {
  /** ssh-agent socket; default SSH_AUTH_SOCK (ssh_config IdentityAgent wins). */
  agentSocket?: string;
  homeDir?: string;
  /** One line per skipped identity file or unreachable agent. */
  debug?: (message: string) => void;
}

/** ssh's default identities (OpenSSH 9.2 order) when neither the machines file nor ssh_config names one. */
export function defaultIdentityFiles(homeDir: string = homedir()): string[] {
  const ssh = join(homeDir, '.ssh');
  return ['id_rsa', 'id_ecdsa', 'id_ecdsa_sk', 'id_ed25519', 'id_ed25519_sk', 'id_xmss', 'id_dsa'].map((name) => join(ssh, name));
}

interface IdentityFile {
  file: string;
  /** The public key blob, when it could be learnt (from the key, its .pub, or an OpenSSH key's clear header). */
  publicBlob?: Buffer;
  /** The usable private key, when it is not encrypted. */
  key?: ParsedKey;
  /** Why the private key cannot be used directly. */
  problem?: string;
}

export async function clientAuth(machine: SshEndpoint, options: IdentityOptions = {}): Promise<ClientAuth> {
  const user = machine.sshUser ?? userInfo().username;
  const debug = options.debug ?? (() => undefined);
  const configured = machine.identityFiles ?? (machine.sshKey ? [machine.sshKey] : undefined);
  const files = (configured ?? defaultIdentityFiles(options.homeDir)).filter((file) => configured !== undefined || existsSync(file)).map((file) => readIdentity(file, machine.hostName));
  const agentSocket = machine.identityAgent === 'none' ? undefined : (machine.identityAgent ?? options.agentSocket ?? process.env.SSH_AUTH_SOCK);
  const agentKeys = agentSocket ? await listAgentKeys(agentSocket, machine.hostName, debug) : [];

  const inAgent = (blob: Buffer | undefined) => blob !== undefined && agentKeys.some((k) => k.getPublicSSH().equals(blob));
  const named = files.flatMap((f) => (f.publicBlob ? agentKeys.filter((k) => k.getPublicSSH().equals(f.publicBlob!)) : []));
  const others = machine.identitiesOnly ? [] : agentKeys.filter((k) => !named.includes(k));
  const agentOrder = [...new Set([...named, ...others])];

  const methods: AnyAuthMethod[] = [];
  const offered: string[] = [];
  const skipped: string[] = [];
  const keyFiles: string[] = [];
  if (agentSocket && agentOrder.length > 0) {
    methods.push({ type: 'agent', username: user, agent: new OrderedAgent(new OpenSSHAgent(agentSocket), agentOrder) as unknown as BaseAgent });
    offered.push(...agentOrder.map((k) => `ssh-agent key ${k.comment || `${k.type} ${sha256Fingerprint(k.getPublicSSH())}`}`));
  }
  for (const f of files) {
    if (inAgent(f.publicBlob)) continue;
    if (f.key) {
      methods.push({ type: 'publickey', username: user, key: f.key });
      offered.push(`key file ${f.file}`);
      keyFiles.push(f.file);
      continue;
    }
    const why = f.problem ?? 'unusable';
    skipped.push(`${f.file} (${why})`);
    debug(`${machine.hostName}: skipping identity file ${f.file}: ${why}`);
  }
  return { user, keyFiles, methods, offered, skipped };
}

/** Read synchronously, as ssh reads it: a small file, read as a login is prepared (remote/sshLogin.ts prepareLogin). */
function readIdentity(file: string, hostName: string): IdentityFile {
  try {
    checkKeyFile(file, hostName);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    // checkKeyFile names the file and host; here only the reason is wanted.
    return { file, problem: message.replace(`SSH key ${file} for host ${hostName} `, ''), ...publicBlobBeside(file) };
  }
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (error) {
    return { file, problem: `cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)})` };
  }
  const parsed = utils.parseKey(bytes);
  if (!(parsed instanceof Error)) {
    // A file holding several keys parses to an array; ssh uses the first. ssh2's types leave that out.
    const key = Array.isArray(parsed) ? (parsed as ParsedKey[])[0]! : parsed;
    if (!key.isPrivateKey()) return { file, publicBlob: key.getPublicSSH(), problem: 'holds no private key' };
    return { file, key, publicBlob: key.getPublicSSH() };
  }
  const encrypted = /encrypted|passphrase/i.test(parsed.message);
  const publicBlob = openSshPublicBlob(bytes) ?? publicBlobBeside(file).publicBlob;
  return {
    file,
    problem: encrypted ? 'passphrase-protected and not loaded in ssh-agent (offload cannot ask for a passphrase)' : `not a key ssh2 can use: ${parsed.message}`,
    ...(publicBlob ? { publicBlob } : {}),
  };
}

/** `<file>.pub`, as ssh reads it to match an identity file with an agent key. */
function publicBlobBeside(file: string): { publicBlob?: Buffer } {
  try {
    const parsed = utils.parseKey(readFileSync(`${file}.pub`));
    if (parsed instanceof Error) return {};
    const key = Array.isArray(parsed) ? (parsed as ParsedKey[])[0]! : parsed;
    return { publicBlob: key.getPublicSSH() };
  } catch {
    return {};
  }
}

/**
 * An OpenSSH-format private key ("openssh-key-v1") keeps its public keys in
 * the clear ahead of the encrypted part, which is how ssh matches an
 * encrypted key with the agent even without a .pub file.
 */
export function openSshPublicBlob(bytes: Buffer): Buffer | undefined {
  const text = bytes.toString('latin1');
  const armored = /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]*?)-----END OPENSSH PRIVATE KEY-----/.exec(text);
  if (!armored) return undefined;
  const body = Buffer.from(armored[1]!.replace(/\s+/g, ''), 'base64');
  const magic = Buffer.from('openssh-key-v1\0', 'latin1');
  if (!body.subarray(0, magic.length).equals(magic)) return undefined;
  let offset = magic.length;
  const field = (): Buffer | undefined => {
    if (offset + 4 > body.length) return undefined;
    const length = body.readUInt32BE(offset);
    if (offset + 4 + length > body.length) return undefined;
    const value = body.subarray(offset + 4, offset + 4 + length);
    offset += 4 + length;
    return value;
  };
  // cipher name, KDF name, KDF options, then the number of keys.
  if (!field() || !field() || !field() || offset + 4 > body.length) return undefined;
  const count = body.readUInt32BE(offset);
  offset += 4;
  if (count < 1) return undefined;
  const blob = field();
  return blob && blob.length > 0 ? Buffer.from(blob) : undefined;
}

function listAgentKeys(socket: string, hostName: string, debug: (message: string) => void): Promise<ParsedKey[]> {
  return new Promise((resolve) => {
    new OpenSSHAgent(socket).getIdentities((error, keys) => {
      if (error || !keys) {
        debug(`${hostName}: ssh-agent at ${socket} cannot be used: ${error?.message ?? 'no answer'}`);
        resolve([]);
        return;
      }
      // An agent answers with parsed keys; ssh2's types also allow the entries of a known_hosts-like list.
      resolve((keys as unknown[]).filter((k): k is ParsedKey => typeof (k as ParsedKey).getPublicSSH === 'function'));
    });
  });
}

/** The agent's keys in the order worked out above; signing is the agent's. */
class OrderedAgent extends AgentBase {
  constructor(
    private readonly inner: BaseAgent<ParsedKey>,
    private readonly keys: ParsedKey[],
  ) {
    super();
  }
  override getIdentities(cb: (error: Error | undefined, keys?: ParsedKey[]) => void): void {
    cb(undefined, this.keys);
  }
  override sign(pubKey: ParsedKey, data: Buffer, options: unknown, cb?: unknown): void {
    (this.inner.sign as (...a: unknown[]) => void).call(this.inner, pubKey, data, options, cb);
  }
}
