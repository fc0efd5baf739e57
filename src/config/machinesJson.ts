import { z } from 'zod';
import { MachinesFileError } from './errors.js';
import { distinctHostNames, SPEED_FACTOR_EXPECTED, SPEED_FACTOR_RANGE, type MachineSpec } from './machineSpec.js';
import { HOST_NAME_PATTERN, LIST_ITEM_PATTERN, USER_NAME_PATTERN } from './names.js';
import { findJsonSyntaxProblem, jsonDepthProblem, lineAndColumn } from './jsonSyntax.js';
import { decodePublicHostKey } from './publicHostKey.js';

/** Settings of the local machine that a JSON machines file may carry. */
export interface LocalFileSettings {
  speedFactor?: number;
  systems?: string[];
  supportedFeatures?: string[];
}

/** The offload JSON machines file, in either of its two shapes, normalised. */
export interface MachinesFile {
  machines: MachineSpec[];
  /** Local build slots (0 = never build locally). */
  maxJobs?: number;
  buildersUseSubstitutes?: boolean;
  local?: LocalFileSettings;
  /** Shared state for a fleet of runners (`postgres://…`); see state/stateLocation.ts. */
  state?: string;
}

const REQUIRED = 'is required';

const LIST_ITEM = LIST_ITEM_PATTERN;
const HOST_NAME = HOST_NAME_PATTERN;
const USER_NAME = USER_NAME_PATTERN;

function text(message: string, pattern: RegExp) {
  return z.string({ invalid_type_error: message, required_error: REQUIRED }).regex(pattern, message);
}

function speedFactor() {
  const message = `expected ${SPEED_FACTOR_EXPECTED}`;
  return z
    .number({ invalid_type_error: message, required_error: REQUIRED })
    .finite(message)
    .min(SPEED_FACTOR_RANGE.min, message)
    .max(SPEED_FACTOR_RANGE.max, message);
}

function integer(message: string, min: number, max = Number.MAX_SAFE_INTEGER) {
  return z
    .number({ invalid_type_error: message, required_error: REQUIRED })
    .int(message)
    .min(min, message)
    .max(max, message);
}

function list(message: string, itemMessage: string, { nonEmpty }: { nonEmpty: boolean }) {
  const items = z.array(text(itemMessage, LIST_ITEM), { invalid_type_error: message, required_error: REQUIRED });
  return nonEmpty ? items.min(1, message) : items;
}

const SYSTEMS = 'expected a non-empty list of systems like "x86_64-linux"';
const SYSTEM = 'expected a system like "x86_64-linux"';
const FEATURES = 'expected a list of feature names';
const FEATURE = 'expected a feature name without spaces or commas';
const HOST_KEY = 'expected base64 of a public key line like "ssh-ed25519 AAAA…"';

const publicHostKey = z.string({ invalid_type_error: HOST_KEY }).superRefine((value, ctx) => {
  const decoded = decodePublicHostKey(value);
  if (!decoded.ok) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `${HOST_KEY} (${decoded.reason})` });
});

const PERCENT = 'expected a percentage from 0 to 100';
const percent = () => z.number({ invalid_type_error: PERCENT }).min(0, PERCENT).max(100, PERCENT);
const MEBIBYTES = 'expected a size in MiB (a number ≥ 0)';
const mebibytes = () => z.number({ invalid_type_error: MEBIBYTES }).min(0, MEBIBYTES).finite(MEBIBYTES);

/** Per-machine overrides of the pressure limits (remote/builderPressure.ts has the defaults and meanings). */
const pressureLimitsSchema = z
  .object(
    {
      cpuSomeAvg10: percent().nullable().optional(),
      memoryFullAvg10: percent().nullable().optional(),
      ioSomeAvg10: percent().nullable().optional(),
      load1: z.number({ invalid_type_error: 'expected a load average (a number ≥ 0)' }).min(0, 'expected a load average (a number ≥ 0)').nullable().optional(),
      storeFreePercent: percent().nullable().optional(),
      buildDirFreePercent: percent().nullable().optional(),
      storeFreeMiB: mebibytes().nullable().optional(),
      buildDirFreeMiB: mebibytes().nullable().optional(),
    },
    { invalid_type_error: 'expected an object with cpuSomeAvg10, memoryFullAvg10, ioSomeAvg10, load1, storeFreePercent, buildDirFreePercent, storeFreeMiB, buildDirFreeMiB' },
  )
  .strict();

export const machineSchema = z
  .object({
    hostName: text('expected a host name or ssh_config alias (no user@, spaces or leading "-")', HOST_NAME),
    sshUser: text('expected a user name (letters, digits, ".", "_", "-")', USER_NAME).optional(),
    sshKey: text('expected the path of a private key file', /^[^\n\r\0]+$/).optional(),
    systems: list(SYSTEMS, SYSTEM, { nonEmpty: true }),
    supportedFeatures: list(FEATURES, FEATURE, { nonEmpty: false }).default([]),
    mandatoryFeatures: list(FEATURES, FEATURE, { nonEmpty: false }).default([]),
    maxJobs: integer('expected a positive integer', 1).default(1),
    speedFactor: speedFactor().default(1),
    publicHostKey: publicHostKey.optional(),
    port: integer('expected a port number from 1 to 65535', 1, 65535).optional(),
    pressure: pressureLimitsSchema.optional(),
  })
  .strict();

const MACHINES = 'expected a list of machines';

const LOCAL_FIELDS = {
  speedFactor: speedFactor().optional(),
  systems: list(SYSTEMS, SYSTEM, { nonEmpty: true }).optional(),
  supportedFeatures: list(FEATURES, FEATURE, { nonEmpty: false }).optional(),
};

const machineList = z.array(machineSchema, { invalid_type_error: MACHINES, required_error: REQUIRED });

export const machinesObjectSchema = z
  .object({
    machines: machineList.default([]),
    maxJobs: integer('expected a whole number of local build slots (0 = never build locally)', 0).optional(),
    buildersUseSubstitutes: z.boolean({ invalid_type_error: 'expected true or false' }).optional(),
    state: z.string({ invalid_type_error: 'expected a postgres://user@host:port/database URL' }).optional(),
    local: z
      .object(LOCAL_FIELDS, { invalid_type_error: 'expected an object with speedFactor, systems, supportedFeatures' })
      .strict()
      .optional(),
  })
  .strict();

/** Parses and validates the text of a JSON machines file; `file` names it in errors. */
export function parseMachinesJson(text: string, file: string): MachinesFile {
  const json = parseJson(text, file);
  if (Array.isArray(json)) {
    const machines = validate(machineList, json, file);
    return { machines: checkHostNames(machines, file) };
  }
  if (typeof json === 'object' && json !== null) {
    const parsed = validate(machinesObjectSchema, json, file);
    return { ...dropUndefined(parsed), machines: checkHostNames(parsed.machines, file) };
  }
  throw new MachinesFileError([
    `${file}: expected a list of machines or an object with a "machines" field, got ${show(json)}`,
  ]);
}

function parseJson(text: string, file: string): unknown {
  const tooDeep = jsonDepthProblem(text);
  if (tooDeep) {
    const { line, column } = lineAndColumn(text, tooDeep.index);
    throw new MachinesFileError([`${file}:${line}:${column}: JSON ${tooDeep.reason}; a machines file needs 4`]);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    const problem = findJsonSyntaxProblem(text) ?? { index: 0, reason: 'not valid JSON' };
    const { line, column } = lineAndColumn(text, problem.index);
    throw new MachinesFileError([`${file}:${line}:${column}: invalid JSON: ${problem.reason}`], { cause: error });
  }
}

function validate<T extends z.ZodTypeAny>(schema: T, json: unknown, file: string): z.output<T> {
  const result = schema.safeParse(json);
  if (result.success) return result.data as z.output<T>;
  const [first, ...rest] = result.error.issues.map((issue) => describeIssue(issue, json, file));
  throw new MachinesFileError([first!, ...rest]);
}

type Path = (string | number)[];

function describeIssue(issue: z.ZodIssue, json: unknown, file: string): string {
  const { prefix, fieldPath, inMachine } = locate(issue.path, json, file);
  if (issue.code === z.ZodIssueCode.unrecognized_keys) {
    const known = Object.keys(
      inMachine || Array.isArray(json) ? machineSchema.shape : fieldPath.length === 0 ? machinesObjectSchema.shape : LOCAL_FIELDS,
    );
    return `${prefix}${issue.keys.map((key) => unknownField(key, fieldPath, known)).join(', ')}`;
  }
  const field = fieldPath.length > 0 ? `field "${fieldLabel(fieldPath)}": ` : '';
  const value = valueAt(json, issue.path);
  if (value === undefined) return `${prefix}${field}${issue.message === REQUIRED ? REQUIRED : issue.message}`;
  return `${prefix}${field}${issue.message}, got ${show(value)}`;
}

/** Splits an issue path into "file: machine N (host): " and the field path inside it. */
function locate(path: Path, json: unknown, file: string): { prefix: string; fieldPath: Path; inMachine: boolean } {
  const machinesAt = Array.isArray(json) ? 0 : path[0] === 'machines' ? 1 : -1;
  const index = machinesAt >= 0 ? path[machinesAt] : undefined;
  if (typeof index !== 'number') return { prefix: `${file}: `, fieldPath: path, inMachine: false };
  const machine = valueAt(json, path.slice(0, machinesAt + 1));
  return { prefix: `${file}: ${machineLabel(index, machine)}: `, fieldPath: path.slice(machinesAt + 1), inMachine: true };
}

/** Machines are numbered from 1, as a person counts them in the file. */
export function machineLabel(index: number, machine: unknown): string {
  const hostName =
    typeof machine === 'object' && machine !== null ? (machine as Record<string, unknown>).hostName : undefined;
  return typeof hostName === 'string' && hostName !== ''
    ? `machine ${index + 1} (${hostName.slice(0, 60)})`
    : `machine ${index + 1}`;
}

function unknownField(key: string, objectPath: Path, known: string[]): string {
  const label = fieldLabel([...objectPath, key]);
  const near = known.find((name) => name.toLowerCase() === key.toLowerCase());
  return near
    ? `unknown field "${label}" (did you mean "${near}"?)`
    : `unknown field "${label}" (known fields: ${known.join(', ')})`;
}

function fieldLabel(path: Path): string {
  return path.map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? part : `.${part}`)).join('');
}

function valueAt(json: unknown, path: Path): unknown {
  let node = json;
  for (const key of path) {
    if (typeof node !== 'object' || node === null) return undefined;
    node = (node as Record<string | number, unknown>)[key];
  }
  return node;
}

function show(value: unknown): string {
  const json = JSON.stringify(value) ?? String(value);
  return json.length > 60 ? `${json.slice(0, 57)}...` : json;
}

/** Duplicate hostNames, in this format's terms. */
function checkHostNames(machines: MachineSpec[], file: string): MachineSpec[] {
  return distinctHostNames(
    machines,
    (index, earlier) =>
      `${file}: ${machineLabel(index, machines[index]!)}: field "hostName": same host as machine ${earlier + 1}; each machine needs its own hostName (use an ssh_config alias to reach one host twice)`,
  );
}

function dropUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
