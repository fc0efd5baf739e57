import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import stringWidth from 'string-width';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTempCluster, type TestCluster } from '../support/cluster.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { instantiate, NIX_ENV, ROOT } from './buildSupport.js';

const run = promisify(execFile);
const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
const offloadLine = (args: string[]) => [process.execPath, join(ROOT, 'bin', 'offload.js'), ...args].map(quote).join(' ');

/** Runs `offload ARGS | READER` in bash; offload's own exit code and stderr. */
async function piped(args: string[], reader: string): Promise<{ code: number; stderr: string; stdout: string }> {
  const script = `${offloadLine(args)} 2>"$ERR" | ${reader}; echo "exit=\${PIPESTATUS[0]}"; cat "$ERR" >&2`;
  const dir = mkdtempSync(join(tmpdir(), 'offload-pipe-'));
  try {
    const { stdout, stderr } = await run('bash', ['-c', script], { env: { ...NIX_ENV, ERR: join(dir, 'stderr') }, cwd: ROOT });
    const code = Number(/exit=(\d+)\s*$/.exec(stdout)?.[1]);
    return { code, stderr, stdout: stdout.replace(/exit=\d+\s*$/, '') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs offload on a pseudo-terminal `columns` wide (util-linux `script`), as a user at a terminal does. */
async function onTerminal(args: string[], columns: number): Promise<string> {
  const { stdout } = await run('script', ['-q', '-e', '-c', `stty cols ${columns} rows 50; exec ${offloadLine(args)}`, '/dev/null'], { env: NIX_ENV, cwd: ROOT });
  return stdout.replace(/\r\n/g, '\n');
}

const examples = ['--machines', 'machines.example.json'];

describe.runIf(integrationPrereqs())('offload in pipes and on terminals', () => {
  const dir = mkdtempSync(join(tmpdir(), 'offload-terminal-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  // `| true` has closed the pipe before offload writes a byte, so every write meets EPIPE; `| head -1` is the everyday case.
  it.each([
    [['--help']],
    [['build', '--help']],
    [['plan', '--from-json', 'fixtures/sample-dag.json', ...examples]],
    [['plan', '--from-json', 'fixtures/sample-dag.json', ...examples, '--json']],
    [['machines', ...examples]],
    [['completion', 'bash']],
  ])('offload %j | head -1 and | true end quietly with exit 0', async (args) => {
    for (const reader of ['head -1', 'true']) {
      const r = await piped(args, reader);
      expect(r.stderr, `${args.join(' ')} | ${reader}`).toBe('');
      expect(r.code, `${args.join(' ')} | ${reader}`).toBe(0);
    }
    expect((await piped(args, 'head -1')).stdout.split('\n').filter(Boolean)).toHaveLength(1);
  });

  it('a failing command in a pipe keeps its own exit code and message, without a stack trace', async () => {
    const r = await piped(['plan', '--from-json', join(dir, 'missing.json')], 'true');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^offload: /);
    expect(r.stderr).not.toMatch(/EPIPE|\n\s+at /);
  });

  it.each([60, 80, 120])('on a %i-column terminal the machines table and the plan fit the window', async (columns) => {
    for (const args of [['machines', ...examples], ['plan', '--from-json', 'fixtures/sample-dag.json', ...examples]]) {
      const text = await onTerminal(args, columns);
      expect(text).toContain('\x1b['); // a terminal: colours on, so widths must ignore them
      const widest = Math.max(...text.split('\n').map((l) => stringWidth(l)));
      expect(widest, text).toBeLessThanOrEqual(columns);
      for (const host of ['aquamarine', 'ruby', 'kana']) expect(text).toContain(host);
    }
  });

  it('without a terminal the machines table keeps whole rows, however wide', async () => {
    const r = await piped(['machines', ...examples], 'cat');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^aquamarine .* known_hosts|^aquamarine .* pinned|^aquamarine .*refused/m);
    expect(r.stdout).not.toContain('\x1b[');
  });

  describe('a build whose reader leaves', () => {
    let cluster: TestCluster & { dispose(): Promise<void> };
    beforeAll(async () => {
      cluster = await startTempCluster('terminal');
    });
    afterAll(async () => {
      await cluster?.dispose();
    });

    it('still builds everything, records it and exits 0 when stdout is closed (| true)', async () => {
      const [drv] = await instantiate('diamond');
      const args = ['build', drv!, '--machines', cluster.machinesFile, '--ssh-config', cluster.sshConfigFile, '--json-events', '--history-file', join(dir, 'h.sqlite')];
      const r = await piped(args, 'true');
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).not.toMatch(/EPIPE|\n\s+at /);
      const { stdout } = await run('nix-store', ['--query', '--outputs', drv!], { env: NIX_ENV });
      await run('nix-store', ['--check-validity', stdout.trim()], { env: NIX_ENV });
    });
  });
});
