import { fileURLToPath } from 'node:url';

/** The nixpkgs DAGs vendored for the tests (fixtures/dags/README.md says what they are). */
export const DAGS = fileURLToPath(new URL('../../fixtures/dags/', import.meta.url));
