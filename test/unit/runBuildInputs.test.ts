import { describe, expect, it } from 'vitest';
import type { Derivation } from '../../src/drv/derivation.js';
import { assertInputAddressed, basicDerivation, buildInputs, usedOutputs } from '../../src/run/buildInputs.js';
import { testDerivation } from './drvFixtures.js';

const S = '/nix/store/';
function drv(name: string, outputs: Record<string, string>, inputDrvs: Record<string, string[]> = {}, inputSrcs: string[] = []): Derivation {
  const h = (name + 'x'.repeat(32)).slice(0, 32).replace(/[^a-z0-9]/g, 'x').replace(/[eotu]/g, 'x');
  return testDerivation({
    drvPath: `${S}${h}-${name}.drv`,
    name,
    outputs: Object.fromEntries(Object.entries(outputs).map(([k, p]) => [k, { path: p, hashAlgo: '', hash: '' }])),
    inputDrvs,
    inputSrcs,
  });
}

const lib = drv('lib', { out: `${S}11111111111111111111111111111111-lib`, dev: `${S}22222222222222222222222222222222-lib-dev`, doc: `${S}33333333333333333333333333333333-lib-doc` });
const src = `${S}44444444444444444444444444444444-src.txt`;
const app = drv('app', { out: `${S}55555555555555555555555555555555-app` }, { [lib.drvPath]: ['out', 'dev'] }, [src]);
const drvs = new Map([lib, app].map((d) => [d.drvPath, d]));

describe('buildInputs', () => {
  it('is the input sources plus only the used outputs of input derivations', () => {
    expect(buildInputs(app, drvs)).toEqual([lib.outputs.out!.path, lib.outputs.dev!.path, src].sort());
    expect(usedOutputs(app, lib)).toEqual([lib.outputs.out!.path, lib.outputs.dev!.path]);
  });

  it('sends a basic derivation: inputs flattened, no input derivations', () => {
    const basic = basicDerivation(app, drvs);
    expect(basic.inputDrvs).toEqual({});
    expect(basic.inputSrcs).toHaveLength(3);
    expect(basic.outputs).toEqual(app.outputs);
    expect(app.inputSrcs).toEqual([src]);
  });

  it('names the derivation when an input derivation or output is missing', () => {
    const broken = drv('broken', { out: `${S}66666666666666666666666666666666-b` }, { [lib.drvPath]: ['man'] });
    expect(() => buildInputs(broken, drvs)).toThrow(/broken\.drv uses output "man" of .*lib\.drv/);
    expect(() => buildInputs(app, new Map())).toThrow(/app\.drv needs .*lib\.drv/);
  });

  it('rejects content-addressed derivations up front', () => {
    const ca = drv('ca', { out: '' });
    expect(() => assertInputAddressed([lib, ca])).toThrow(/ca\.drv has content-addressed output out; content-addressed derivations are not supported yet/);
    expect(() => assertInputAddressed([lib, app])).not.toThrow();
  });
});
