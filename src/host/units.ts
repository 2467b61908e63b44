// Sizes as people read them, in one place: binary units (KiB, MiB) for what
// stasis reports of files and memory, decimal ones (kB, MB) where the peer a
// user compares with prints those (podman's image sizes, transfer rates).

/** "512 bytes", "160.0 KiB", "4.0 GiB"; with `si`, "512 B", "160.0 kB", "4.3 GB". */
export function formatBytes(bytes: number, opts: { si?: boolean } = {}): string {
  const step = opts.si ? 1000 : 1024;
  const units = opts.si ? ['B', 'kB', 'MB', 'GB', 'TB'] : ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= step && unit < units.length - 1) {
    value /= step;
    unit++;
  }
  return unit === 0 ? `${value} ${units[0]}` : `${value.toFixed(1)} ${units[unit]}`;
}
