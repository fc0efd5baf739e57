import { resolve } from 'node:path';
import { MachinesFileError } from './errors.js';
import { distinctHostNames, SPEED_FACTOR_EXPECTED, speedFactorInRange, type MachineSpec } from './machineSpec.js';
import { HOST_NAME_PATTERN, LIST_ITEM_PATTERN, USER_NAME_PATTERN } from './names.js';
import { decodePublicHostKey } from './publicHostKey.js';

/**
 * Nix's machines format (`/etc/nix/machines`, `--builders`), read the way
 * Nix 2.8's src/libstore/machines.cc reads it:
 *   [ssh://|ssh-ng://][user@]host[:port] systems sshKey maxJobs speedFactor supportedFeatures mandatoryFeatures base64HostKey
 * Columns are optional from the right and "-" means "not set"; entries are
 * separated by newlines or ";"; "#" starts a comment; "@file" includes a file
 * (relative to the working directory; a missing one is skipped, as Nix does).
 */
export interface NixMachinesOptions {
  /** Where the text came from: a file path, or "--builders". */
  source: string;
  /** True when `source` is a file, so entries are located by line number. */
  sourceIsFile: boolean;
  /** Systems of a machine whose systems column is "-" or absent (Nix: settings.thisSystem). */
  localSystem: string;
  /** Base of relative "@file" includes. */
  cwd: string;
  /** Reads an included file; undefined when it does not exist. */
  readFile: (path: string) => string | undefined;
}

export interface NixMachines {
  machines: MachineSpec[];
  /** Where each machine was written ("file:line" or "SOURCE entry N"), in the same order. */
  origins: string[];
  /** Things Nix accepts silently but a user probably wants to know about. */
  warnings: string[];
}

interface Entry {
  text: string;
  /** "file:line" or "--builders entry N". */
  where: string;
}

export function parseNixMachines(text: string, options: NixMachinesOptions): NixMachines {
  const warnings: string[] = [];
  const entries = expandEntries(text, options.source, options.sourceIsFile, options, [], warnings);
  const machines = entries.map((entry) => parseEntry(entry, options.localSystem, warnings));
  distinctHostNames(
    machines,
    (index, earlier) =>
      `${entries[index]!.where}: builder "${machines[index]!.hostName}" is listed again (first at ${entries[earlier]!.where}); each machine needs its own host name (use an ssh_config alias to reach one host twice)`,
  );
  return { machines, origins: entries.map((entry) => entry.where), warnings };
}

function expandEntries(
  text: string,
  source: string,
  isFile: boolean,
  options: NixMachinesOptions,
  including: string[],
  warnings: string[],
): Entry[] {
  const result: Entry[] = [];
  let count = 0;
  text.split('\n').forEach((line, lineIndex) => {
    for (const piece of line.split(';')) {
      // Nix trims first, then cuts the comment, then skips what is empty.
      const entry = piece.trim().replace(/#.*$/, '');
      if (entry === '') continue;
      count++;
      const where = isFile ? `${source}:${lineIndex + 1}` : `${source} entry ${count}`;
      if (entry.startsWith('@')) result.push(...expandInclude(entry.slice(1).trim(), where, options, including, warnings));
      else result.push({ text: entry, where });
    }
  });
  return result;
}

function expandInclude(
  path: string,
  where: string,
  options: NixMachinesOptions,
  including: string[],
  warnings: string[],
): Entry[] {
  const file = resolve(options.cwd, path);
  if (including.includes(file)) {
    throw new MachinesFileError([`${where}: @${path} includes itself (via ${[...including, file].join(' -> ')})`]);
  }
  let text: string | undefined;
  try {
    text = options.readFile(file);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new MachinesFileError([`${where}: cannot read included machines file ${file}: ${reason}`], { cause: error });
  }
  if (text === undefined) {
    warnings.push(`${where}: included machines file ${file} does not exist; skipped, as Nix does`);
    return [];
  }
  return expandEntries(text, file, true, options, [...including, file], warnings);
}

const COLUMNS = [
  'store URI',
  'systems',
  'SSH key',
  'maxJobs',
  'speedFactor',
  'supportedFeatures',
  'mandatoryFeatures',
  'public host key',
] as const;

function parseEntry(entry: Entry, localSystem: string, warnings: string[]): MachineSpec {
  const tokens = entry.text.split(/[ \t\r\n]+/).filter((token) => token !== '');
  const isSet = (column: number) => tokens[column] !== undefined && tokens[column] !== '-';
  const fail = (message: string): never => {
    const shown = entry.text.length > 80 ? `${entry.text.slice(0, 77)}...` : entry.text;
    throw new MachinesFileError([`${entry.where}: bad machine specification '${shown}': ${message}`]);
  };
  const column = (index: number) => `column ${index + 1} (${COLUMNS[index]}) ${JSON.stringify(tokens[index])}`;
  if (!isSet(0)) fail('the first column must be the builder, e.g. ssh://root@builder');
  if (tokens.length > COLUMNS.length) {
    warnings.push(`${entry.where}: ${tokens.length - COLUMNS.length} column(s) after the public host key ignored, as Nix does`);
  }

  const spec: MachineSpec = {
    ...parseStoreUri(tokens[0]!, fail),
    systems: isSet(1) ? list(tokens[1]!, (item) => LIST_ITEM_PATTERN.test(item) || fail(`${column(1)}: bad system "${item}"`)) : [localSystem],
    supportedFeatures: isSet(5) ? unique(list(tokens[5]!, () => true)) : [],
    mandatoryFeatures: isSet(6) ? unique(list(tokens[6]!, () => true)) : [],
    maxJobs: isSet(3) ? wholeNumber(tokens[3]!) ?? fail(`${column(3)} is not a whole number`) : 1,
    speedFactor: isSet(4) ? speedFactor(tokens[4]!) ?? fail(`${column(4)} is not ${SPEED_FACTOR_EXPECTED} (0 means 1)`) : 1,
  };
  if (isSet(2)) spec.sshKey = tokens[2]!;
  if (isSet(7)) {
    const decoded = decodePublicHostKey(tokens[7]!);
    if (!decoded.ok) fail(`column 8 (public host key) must be base64 of a line like "ssh-ed25519 AAAA…": ${decoded.reason}`);
    spec.publicHostKey = tokens[7]!;
  }
  return spec;
}

type Fail = (message: string) => never;

/**
 * Nix prepends ssh:// to a bare host; other store URIs (local, daemon, paths,
 * https://...) are not SSH builders and offload cannot drive them.
 */
function parseStoreUri(uri: string, fail: Fail): Pick<MachineSpec, 'hostName' | 'sshUser' | 'port'> {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(uri);
  if (scheme && scheme[1] !== 'ssh' && scheme[1] !== 'ssh-ng') {
    fail(`store URI scheme "${scheme[1]}://" is not supported; offload builds over ssh:// or ssh-ng://`);
  }
  const rest = scheme ? uri.slice(scheme[0].length) : uri;
  if (!scheme && (rest.includes('/') || /^(auto|daemon|local)(\?|$)|^\?/.test(rest))) {
    fail(`"${uri}" is a local store, not an SSH builder`);
  }
  if (rest.includes('?')) fail(`store URI parameters ("${rest.slice(rest.indexOf('?'))}") are not supported`);
  if (rest.includes('/')) fail(`store URI "${uri}" has a path; expected [user@]host[:port]`);
  const at = rest.lastIndexOf('@');
  const user = at >= 0 ? rest.slice(0, at) : undefined;
  const { host, port } = splitHostPort(at >= 0 ? rest.slice(at + 1) : rest, fail);
  if (user !== undefined && !USER_NAME_PATTERN.test(user)) fail(`bad user name "${user}" in store URI`);
  if (!HOST_NAME_PATTERN.test(host)) fail(`bad host name "${host}" in store URI`);
  return { hostName: host, ...(user !== undefined && { sshUser: user }), ...(port !== undefined && { port }) };
}

function splitHostPort(hostPort: string, fail: Fail): { host: string; port?: number } {
  const bracketed = /^\[([^\]]*)\](?::(.*))?$/.exec(hostPort);
  const colons = hostPort.split(':').length - 1;
  // A bare IPv6 address has several colons and cannot carry a port without brackets.
  const [host, portText] = bracketed ? [bracketed[1]!, bracketed[2]] : colons === 1 ? hostPort.split(':') : [hostPort];
  if (portText === undefined) return { host };
  const port = wholeNumber(portText);
  if (port === undefined || port < 1 || port > 65535) fail(`bad port "${portText}" in store URI`);
  return { host, port };
}

function list(column: string, check: (item: string) => unknown): string[] {
  const items = column.split(',').filter((item) => item !== '');
  items.forEach(check);
  return items;
}

/** Features are sets in Nix: repeating one changes nothing. */
function unique(items: string[]): string[] {
  return [...new Set(items)];
}

/** Nix reads maxJobs with string2Int<unsigned int>. */
function wholeNumber(text: string): number | undefined {
  if (!/^\+?\d+$/.test(text)) return undefined;
  const n = Number(text);
  return n <= 0xffffffff ? n : undefined;
}

/**
 * Nix 2.8 reads an unsigned integer and raises 0 to 1; later Nix reads a
 * decimal. Both are accepted here, and 0 still means 1.
 */
function speedFactor(text: string): number | undefined {
  if (!/^\+?(\d+(\.\d*)?|\.\d+)$/.test(text)) return undefined;
  const n = Number(text);
  if (n === 0) return 1;
  return speedFactorInRange(n) ? n : undefined;
}

/**
 * One machine as a line of Nix's machines format; parseNixMachines reads it
 * back to the same machine. Values that the format cannot carry are refused.
 */
export function formatNixMachine(machine: MachineSpec): string {
  const refuse = (field: string, value: unknown): never => {
    throw new MachinesFileError([
      `machine ${machine.hostName}: field "${field}" = ${JSON.stringify(value)} cannot be written in Nix's machines format`,
    ]);
  };
  const item = (field: string) => (value: string) => (LIST_ITEM_PATTERN.test(value) ? value : refuse(field, value));
  const listColumn = (field: keyof MachineSpec, values: string[]) => (values.length > 0 ? values.map(item(field)).join(',') : '-');
  const host = machine.port !== undefined && machine.hostName.includes(':') ? `[${machine.hostName}]` : machine.hostName;
  const uri = `ssh://${machine.sshUser !== undefined ? `${machine.sshUser}@` : ''}${host}${machine.port !== undefined ? `:${machine.port}` : ''}`;
  if (machine.systems.length === 0) refuse('systems', machine.systems);
  if (machine.sshKey !== undefined && !/^[^\s#;]+$/.test(machine.sshKey)) refuse('sshKey', machine.sshKey);
  if (machine.sshKey === '-') refuse('sshKey', machine.sshKey);
  if (!speedFactorInRange(machine.speedFactor) || /e/i.test(String(machine.speedFactor))) refuse('speedFactor', machine.speedFactor);
  return [
    uri,
    listColumn('systems', machine.systems),
    machine.sshKey ?? '-',
    String(machine.maxJobs),
    String(machine.speedFactor),
    listColumn('supportedFeatures', machine.supportedFeatures),
    listColumn('mandatoryFeatures', machine.mandatoryFeatures),
    machine.publicHostKey ?? '-',
  ].join(' ');
}
