import type { Machine } from '../config/machine.js';
import { SHOW_CONFIG_JSON_COMMAND, showConfigSettings } from './nixConfigProbe.js';
import type { SshPool } from './sshPool.js';
import { filterAnsiEscapes } from './terminalEscapes.js';

/**
 * The keys a builder signs what it builds with: Nix signs every path it
 * builds with each key in its `secret-key-files`. offload learns the
 * public half on the builder itself (`nix key convert-secret-to-public`),
 * so no secret key ever travels; a file the ssh user cannot read gives no
 * key, only the reason.
 */
export interface SigningKey {
  /** The secret key file named in the builder's secret-key-files. */
  file: string;
  /** `name:base64`, as trusted-public-keys lists it. */
  publicKey?: string;
  /** Why the public key is unknown (the file is unreadable, Nix too old, …). */
  problem?: string;
}

/**
 * `postBuildHook`: the builder's post-build-hook, when it has one. Nix runs
 * it after each build, before the build's result goes back, so a hook that
 * runs `nix store sign` signs the outputs after the build with a key offload
 * cannot learn (the hook is any program).
 */
export type BuilderSigning = { ok: true; keys: SigningKey[]; postBuildHook?: string } | { ok: false; reason: string };

const PUBLIC_KEY = /^([A-Za-z0-9._+-]{1,128}):([A-Za-z0-9+/]{43}=)$/;

/** `name:base64 of 32 bytes` (an ed25519 public key), or undefined. */
export function parsePublicKey(text: string): { name: string; key: Buffer } | undefined {
  const match = PUBLIC_KEY.exec(text.trim());
  if (!match) return undefined;
  const key = Buffer.from(match[2]!, 'base64');
  return key.length === 32 ? { name: match[1]!, key } : undefined;
}

/**
 * The shell command that prints a secret key file's public key on the
 * builder. The file name comes from the builder's own settings; it is
 * quoted all the same, and refused unless it is an absolute path of
 * printable characters.
 */
export function publicKeyCommand(file: string): string | undefined {
  if (!file.startsWith('/') || !/^[\x20-\x7e]+$/.test(file)) return undefined;
  return `nix --extra-experimental-features nix-command key convert-secret-to-public < '${file.replace(/'/g, `'\\''`)}'`;
}

/**
 * True when the store's trusted-public-keys has this very key: Nix looks a
 * signature's key up by name and checks it with the key listed under that
 * name, so the same name with other bytes trusts nothing.
 */
export function isTrustedKey(publicKey: string, trustedPublicKeys: readonly string[]): boolean {
  const key = parsePublicKey(publicKey);
  if (!key) return false;
  return trustedPublicKeys.some((trusted) => {
    const other = parsePublicKey(trusted);
    return other !== undefined && other.name === key.name && other.key.equals(key.key);
  });
}

/** The builder's secret-key-files and post-build-hook from `nix show-config --json` (`showConfigJson`, if already run), then each public key. */
export async function probeSigningKeys(pool: SshPool, machine: Machine, showConfigJson?: string): Promise<BuilderSigning> {
  let text = showConfigJson;
  if (text === undefined) {
    const result = await pool.exec(machine, SHOW_CONFIG_JSON_COMMAND);
    if (result.code !== 0) return { ok: false, reason: `${SHOW_CONFIG_JSON_COMMAND} failed: ${firstLine(result.stderr) ?? `exit ${result.code ?? result.signal}`}` };
    text = result.stdout;
  }
  const settings = showConfigSettings(text);
  if (!settings.ok) return settings;
  const files = settings.get('secret-key-files') ?? [];
  const keys = await Promise.all(files.map((file) => publicKeyOf(pool, machine, file)));
  const hook = settings.get('post-build-hook')?.join(' ');
  return hook ? { ok: true, keys, postBuildHook: filterAnsiEscapes(hook, { keepColours: false }).slice(0, 300) } : { ok: true, keys };
}

async function publicKeyOf(pool: SshPool, machine: Machine, file: string): Promise<SigningKey> {
  const command = publicKeyCommand(file);
  if (command === undefined) return { file, problem: 'not an absolute path of printable characters' };
  const result = await pool.exec(machine, command, { maxReplyBytes: 64 * 1024 });
  const parsed = result.code === 0 ? parsePublicKey(result.stdout) : undefined;
  if (parsed) return { file, publicKey: `${parsed.name}:${parsed.key.toString('base64')}` };
  const why = result.code === 0 ? 'nix key convert-secret-to-public printed no public key' : (firstLine(result.stderr) ?? `exit ${result.code ?? result.signal}`);
  return { file, problem: why.replace(/^(?:ba|da)?sh: (?:line )?\d+: /, '') };
}

/** The first line worth showing of a builder's stderr, without escape sequences (it reaches the terminal). */
function firstLine(text: string): string | undefined {
  return filterAnsiEscapes(text, { keepColours: false })
    .split('\n').map((l) => l.trim()).find((l) => l !== '' && !/^warning:/.test(l))?.slice(0, 300);
}
