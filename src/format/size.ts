/** A size in KiB the way df -h would say it: `512 KiB`, `1.5 MiB`, `79 GiB`. */
export function formatKiB(kib: number): string {
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = kib;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value >= 10 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}
