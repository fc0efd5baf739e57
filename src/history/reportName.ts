/**
 * The name without its version, as nix-output-monitor keys its build reports
 * (it drops trailing digits, dots and dashes: `hello-2.12.1` → `hello`). Samples
 * under this key survive version bumps and match rows imported from nom.
 */
export function reportName(name: string): string {
  const stripped = name.replace(/[.0-9-]+$/, '');
  return stripped === '' ? name : stripped;
}
