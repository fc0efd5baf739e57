import { LOCAL_HOST } from '../schedule/types.js';

/**
 * Nix's `--log-format internal-json` activity stream, so that
 * `offload build … |& nom --json` shows offload's builds as if Nix ran them.
 * Numbers and layout follow Nix's JSONLogger (src/libutil/logging.cc) and the
 * enums in src/libutil/logging.hh; nix-output-monitor's parser
 * (lib/NOM/Parser/JSON.hs) checks exactly these fields:
 *   start:  {"action":"start","id","level","type","text","parent","fields"}
 *   stop:   {"action":"stop","id"}
 *   result: {"action":"result","id","type","fields"}
 *   msg:    {"action":"msg","level","msg"}
 * every line prefixed with `@nix `.
 */

export const ActivityType = {
  unknown: 0,
  copyPath: 100,
  fileTransfer: 101,
  realise: 102,
  copyPaths: 103,
  builds: 104,
  build: 105,
  optimiseStore: 106,
  verifyPaths: 107,
  substitute: 108,
  queryPathInfo: 109,
  postBuildHook: 110,
  buildWaiting: 111,
} as const;

export const ResultType = {
  fileLinked: 100,
  buildLogLine: 101,
  untrustedPath: 102,
  corruptedPath: 103,
  setPhase: 104,
  progress: 105,
  setExpected: 106,
  postBuildLogLine: 107,
} as const;

export const Verbosity = { error: 0, warn: 1, notice: 2, info: 3, talkative: 4, chatty: 5, debug: 6, vomit: 7 } as const;

/** Where lines go: a Writable such as process.stderr. */
export interface LineSink {
  write(chunk: string): unknown;
}

type Field = string | number;

export class InternalJsonLogger {
  private nextId = 1;
  /**
   * Nix makes ids unique across processes by putting the pid in the high
   * 32 bits; here only 20 bits of it, so ids stay exact JavaScript integers.
   */
  private readonly idBase: number;
  private readonly open = new Set<number>();
  /** A substitution's copy activity, stopped with it. */
  private readonly children = new Map<number, number>();

  constructor(
    private readonly out: LineSink,
    options: { pid?: number } = {},
  ) {
    this.idBase = ((options.pid ?? process.pid) % 0x100000) * 2 ** 32;
  }

  /**
   * Starts an actBuild activity. Like Nix, the machine is its store URI
   * (`ssh://host`) and empty for a local build; the last two fields are
   * curRound and nrRounds, always 1. Host `local` (LOCAL_HOST) is local
   * unless `options.local` says otherwise.
   */
  startBuild(drvPath: string, host: string, options: { local?: boolean } = {}): number {
    const machine = (options.local ?? host === LOCAL_HOST) ? '' : `ssh://${host}`;
    const text = machine === '' ? `building '${drvPath}'` : `building '${drvPath}' on '${machine}'`;
    return this.start(Verbosity.info, ActivityType.build, text, 0, [drvPath, machine, 1, 1]);
  }

  /**
   * A download as Nix reports one: an actSubstitute activity (level error,
   * no text, fields: path and the cache's URI) holding the actCopyPath that
   * moves the bytes (`copying path '…' from '…'`, fields: path, source URI,
   * destination URI: `local` for this machine). nom lists these as
   * downloads. Returns both ids; stop the outer one.
   */
  startSubstitute(path: string, cacheUri: string, to: string): number {
    const id = this.start(Verbosity.error, ActivityType.substitute, '', 0, [path, cacheUri]);
    this.children.set(id, this.startCopy(path, cacheUri, to, id));
    return id;
  }

  /** An actCopyPath activity, as Nix's copyStorePath starts one (text as makeCopyPathMessage words it). */
  startCopy(path: string, from: string, to: string, parent = 0): number {
    const text = to === 'local' ? `copying path '${path}' from '${from}'` : `copying path '${path}' from '${from}' to '${to}'`;
    return this.start(Verbosity.info, ActivityType.copyPath, text, parent, [path, from, to]);
  }

  logLine(id: number, line: string): void {
    this.result(id, ResultType.buildLogLine, [line.replace(/\r?\n$/, '')]);
  }

  setPhase(id: number, phase: string): void {
    this.result(id, ResultType.setPhase, [phase]);
  }

  /** Stops an activity (and the copy inside a substitution) once. */
  stopBuild(id: number): void {
    const child = this.children.get(id);
    if (child !== undefined) {
      this.children.delete(id);
      this.stopBuild(child);
    }
    if (!this.open.delete(id)) return;
    this.emit({ action: 'stop', id });
  }

  private start(level: number, type: number, text: string, parent: number, fields: Field[]): number {
    const id = this.idBase + this.nextId++;
    this.open.add(id);
    this.emit({ action: 'start', id, level, type, text, parent, fields });
    return id;
  }

  /** nom lists a msg as a build error only when it starts with `error:`. */
  error(message: string): void {
    this.emit({ action: 'msg', level: Verbosity.error, msg: message.startsWith('error:') ? message : `error: ${message}` });
  }

  info(message: string): void {
    this.emit({ action: 'msg', level: Verbosity.info, msg: message });
  }

  /** Stops every activity still open (on interrupt), so nom does not show them running forever. */
  stopAll(): void {
    for (const id of [...this.open]) this.stopBuild(id);
  }

  private result(id: number, type: number, fields: Field[]): void {
    this.emit({ action: 'result', id, type, fields });
  }

  private emit(message: Record<string, unknown>): void {
    this.out.write(`@nix ${JSON.stringify(message)}\n`);
  }
}
