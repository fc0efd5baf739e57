// @ts-check
// Type-aware linting: the rules that matter most here are about promises
// (a floating or misused one loses an error or a build) and type-only imports
// (so a type never drags a module's side effects or an import cycle along).
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

export default defineConfig(
  { ignores: ['dist/', 'node_modules/', 'coverage/', '.cluster/'] },
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { project: './tsconfig.test.json', tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-import-type-side-effects': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // Rethrowing or rejecting with what a catch received is fine; inventing non-Errors is not.
      '@typescript-eslint/only-throw-error': ['error', { allowThrowingUnknown: true }],
      // AbortSignal.reason is typed any.
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingUnknown: true, allowThrowingAny: true }],
      // Generator functions cannot be arrows; `self` is the one name for the instance they close over.
      '@typescript-eslint/no-this-alias': ['error', { allowedNames: ['self'] }],
      // An async function without await still turns a throw into a rejection, which its awaiting callers rely on.
      '@typescript-eslint/require-await': 'off',
      // Terminal escapes and XML-invalid characters are matched on purpose (stripping builder output).
      'no-control-regex': 'off',
    },
  },
  {
    // Tests read JSON output and use vitest's asymmetric matchers, both typed any,
    // and pass methods to expect(); the promise and import rules still apply.
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/unbound-method': 'off',
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: { globals: { console: 'readonly', process: 'readonly' } },
  },
  {
    // bin/ is CommonJS (bin/package.json): the entry starts without Node's ES module loader.
    files: ['bin/**/*.js'],
    languageOptions: { sourceType: 'commonjs', globals: { require: 'readonly', __dirname: 'readonly' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
