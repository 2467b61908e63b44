// Names made from the clock.

/** A folder or file name for a moment, sortable, unique to the millisecond (checkpoint folders, export archives, kept logs). */
export function timestampName(date: Date): string {
  return date.toISOString().replace(/[-:]/g, '');
}
