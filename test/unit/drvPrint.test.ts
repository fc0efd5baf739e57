import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DAGS } from './realDags.js';
import type { Derivation, DerivationOutput } from '../../src/drv/derivation.js';
import { completeDerivation, type DerivationFields } from '../../src/drv/derivationFacts.js';
import { DrvParseError } from '../../src/drv/errors.js';
import { parseDrv } from '../../src/drv/parseDrv.js';
import { printDrv } from '../../src/drv/printDrv.js';
import { compareNixStrings } from '../../src/drv/nixOrder.js';

const FIXTURES = new URL('../../fixtures/drv/', import.meta.url);
const DRV_PATH = '/nix/store/i3bv4i15h5f4h7x0msi82g7ah3bckkdj-test.drv';

describe('printDrv', () => {
  it.each(['escapes.drv', 'multi-output.drv', 'fixed-output.drv', 'ca-floating.drv', 'structured-attrs.drv'])(
    'prints %s back to the same text',
    (name) => {
      const text = readFileSync(new URL(name, FIXTURES), 'utf8');
      expect(printDrv(parseDrv(text, DRV_PATH))).toBe(text);
    },
  );

  it('escapes exactly what Nix escapes', () => {
    const drv = parseDrv(`Derive([],[],[],"s","b",[],[])`, DRV_PATH);
    drv.args = ['"\\\n\r\t', 'ü\u0001\u007f'];
    expect(printDrv(drv)).toBe(`Derive([],[],[],"s","b",["\\"\\\\\\n\\r\\t","ü\u0001\u007f"],[])`);
  });

  it('sorts maps and sets in UTF-8 byte order, whatever order they were built in', () => {
    const drv = parseDrv(`Derive([],[],[],"s","b",[],[])`, DRV_PATH);
    drv.env = { b: '1', a: '2', '\u{1F600}': '3', '\uFF01': '4', B: '5' };
    drv.inputSrcs = ['/nix/store/l9r346p3d25vs4g5v37f3r3f28js97kb-z', '/nix/store/6cp643dzvlxxpkgbg5kzmwj47sam9zs2-a'];
    // UTF-16 order would put the emoji (a surrogate pair) before U+FF01; UTF-8 puts it after.
    expect(printDrv(drv)).toBe(
      `Derive([],[],["/nix/store/6cp643dzvlxxpkgbg5kzmwj47sam9zs2-a","/nix/store/l9r346p3d25vs4g5v37f3r3f28js97kb-z"],"s","b",[],` +
        `[("B","5"),("a","2"),("b","1"),("\uFF01","4"),("\u{1F600}","3")])`,
    );
  });

  it('compareNixStrings agrees with comparing UTF-8 bytes', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), fc.string({ unit: 'binary' }), (a, b) => {
        const bytes = Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
        expect(Math.sign(compareNixStrings(a, b))).toBe(bytes);
      }),
      { numRuns: 1000 },
    );
  });
});

describe('printDrv on the real hello .drv files', () => {
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'offload-print-'));
    execFileSync('tar', ['xzf', join(DAGS, 'hello-drvs.tar.gz'), '-C', root]);
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('reproduces all 253 files byte for byte', () => {
    const names = readdirSync(join(root, 'nix/store'));
    expect(names).toHaveLength(253);
    const differing = names.filter((name) => {
      const bytes = readFileSync(join(root, 'nix/store', name));
      const printed = printDrv(parseDrv(bytes.toString('utf8'), `/nix/store/${name}`));
      return !Buffer.from(printed, 'utf8').equals(bytes);
    });
    expect(differing).toEqual([]);
  });
});

// ---- properties ----

const BASE32 = '0123456789abcdfghijklmnpqrsvwxyz';
const NAME_CHARS = 'abcXYZ019+-._?=';
const hash = fc.string({ unit: fc.constantFrom(...BASE32), minLength: 32, maxLength: 32 });
const pathName = fc
  .string({ unit: fc.constantFrom(...NAME_CHARS), minLength: 1, maxLength: 20 })
  .filter((n) => !n.startsWith('.'));
const storePath = fc.tuple(hash, pathName).map(([h, n]) => `/nix/store/${h}-${n}`);
const drvInput = fc.tuple(hash, pathName).map(([h, n]) => `/nix/store/${h}-${n}.drv`);
/** Any text, including every character Nix escapes. */
const anyString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.string({ unit: fc.constantFrom('"', '\\', '\n', '\r', '\t', 'a', ' ', '(', ')', ',', '[', ']'), maxLength: 30 }),
);
const sortedSet = <T extends string>(arb: fc.Arbitrary<T>) =>
  fc.uniqueArray(arb, { maxLength: 5 }).map((xs) => xs.sort(compareNixStrings));
/** The parser builds ordinary objects; fast-check defaults to null-prototype ones. */
const plain = { noNullPrototype: true } as const;
const output: fc.Arbitrary<DerivationOutput> = fc.oneof(
  fc.record({ path: storePath, hashAlgo: fc.constant(''), hash: fc.constant('') }, plain),
  fc.record({ path: storePath, hashAlgo: fc.constantFrom('sha256', 'r:sha256'), hash: fc.stringMatching(/^[0-9a-f]{64}$/) }, plain),
  fc.record({ path: fc.constant(''), hashAlgo: fc.constantFrom('r:sha256', 'text:sha256'), hash: fc.constant('') }, plain),
);
const env = fc.dictionary(anyString.filter((k) => k !== '__json'), anyString, { maxKeys: 8, ...plain });
const structuredAttrs = fc.record(
  {
    requiredSystemFeatures: fc.array(fc.constantFrom('kvm', 'big-parallel', 'benchmark')),
    preferLocalBuild: fc.boolean(),
    allowSubstitutes: fc.boolean(),
    script: anyString,
  },
  { requiredKeys: [] },
);

const derivation: fc.Arbitrary<Derivation> = fc
  .record({
    hash,
    name: pathName,
    outputs: fc.dictionary(pathName, output, { minKeys: 1, maxKeys: 4, ...plain }),
    inputDrvs: fc.dictionary(drvInput, sortedSet(pathName).filter((xs) => xs.length > 0), { maxKeys: 4, ...plain }),
    inputSrcs: sortedSet(storePath),
    system: anyString,
    builder: anyString,
    args: fc.array(anyString, { maxLength: 5 }),
    env,
    json: fc.option(structuredAttrs),
  })
  .map(({ hash: h, name, json, env: e, ...rest }) => {
    const fields: DerivationFields = {
      drvPath: `/nix/store/${h}-${name}.drv`,
      ...rest,
      env: json === null ? e : { ...e, __json: JSON.stringify(json) },
    };
    return completeDerivation(fields, (problem) => {
      throw new Error(problem);
    });
  });

function expectOnlyParseErrors(text: string): void {
  try {
    parseDrv(text, DRV_PATH);
  } catch (e) {
    if (!(e instanceof DrvParseError)) throw e;
  }
}

describe('properties', () => {
  it('parse(print(d)) equals d for any derivation', () => {
    fc.assert(
      fc.property(derivation, (d) => {
        expect(parseDrv(printDrv(d), d.drvPath)).toStrictEqual(d);
      }),
      { numRuns: 500 },
    );
  });

  it('every strict prefix of a derivation is a DrvParseError', () => {
    fc.assert(
      fc.property(derivation, fc.double({ min: 0, max: 1, noNaN: true }), (d, cut) => {
        const text = printDrv(d);
        const prefix = text.slice(0, Math.min(text.length - 1, Math.floor(cut * text.length)));
        expect(() => parseDrv(prefix, d.drvPath)).toThrow(DrvParseError);
      }),
      { numRuns: 500 },
    );
  });

  it('mutated derivations either parse or fail with a DrvParseError', () => {
    const mutation = fc.record({
      at: fc.double({ min: 0, max: 1, noNaN: true }),
      deleteCount: fc.nat({ max: 5 }),
      insert: fc.string({ unit: fc.constantFrom('"', '\\', '(', ')', '[', ']', ',', 'x', '/', '\n', 'é'), maxLength: 3 }),
    });
    fc.assert(
      fc.property(derivation, fc.array(mutation, { minLength: 1, maxLength: 4 }), (d, mutations) => {
        // Mutated by code point: reading a .drv never yields half of a surrogate pair
        // (parseDrv refuses one as a caller's bug, a RangeError, not as bad input).
        let chars = [...printDrv(d)];
        for (const m of mutations) {
          const i = Math.floor(m.at * chars.length);
          chars = [...chars.slice(0, i), ...m.insert, ...chars.slice(i + m.deleteCount)];
        }
        expectOnlyParseErrors(chars.join(''));
      }),
      { numRuns: 1000 },
    );
  });

  it('random text fails with a DrvParseError', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (text) => {
        expect(() => parseDrv(text, DRV_PATH)).toThrow(DrvParseError);
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(anyString, (tail) => expectOnlyParseErrors(`Derive(${tail}`)),
      { numRuns: 500 },
    );
  });
});
