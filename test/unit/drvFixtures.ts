import type { Derivation } from '../../src/drv/derivation.js';

/** A plain input-addressed x86_64-linux derivation with /bin/sh as builder; tests override what they need. */
export function testDerivation(over: Partial<Derivation> & Pick<Derivation, 'drvPath' | 'name' | 'outputs'>): Derivation {
  return {
    inputDrvs: {},
    inputSrcs: [],
    system: 'x86_64-linux',
    builder: '/bin/sh',
    args: [],
    env: {},
    requiredSystemFeatures: [],
    preferLocalBuild: false,
    allowSubstitutes: true,
    isFixedOutput: false,
    isBuiltin: false,
    ...over,
  };
}
