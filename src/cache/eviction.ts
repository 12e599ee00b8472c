/**
 * Which entries leave the store. Pure: the shell reads entries in
 * least-recently-used order and deletes what these functions choose.
 */

export interface CacheLimits {
  readonly maxEntries: number;
  readonly maxBytes: number;
  /** An answer older than this is never served and is pruned. */
  readonly ttlMs: number;
}

export interface CacheTotals {
  readonly entries: number;
  readonly bytes: number;
}

/** Entries stored before this time have expired. */
export function expiryCutoff(now: number, limits: Pick<CacheLimits, "ttlMs">): number {
  return now - limits.ttlMs;
}

/** How far over its bounds a store is, once `incoming` is added (0 and 0 when within them). */
export function excess(totals: CacheTotals, limits: Pick<CacheLimits, "maxEntries" | "maxBytes">, incoming: CacheTotals = { entries: 0, bytes: 0 }): CacheTotals {
  return {
    entries: Math.max(0, totals.entries + incoming.entries - limits.maxEntries),
    bytes: Math.max(0, totals.bytes + incoming.bytes - limits.maxBytes),
  };
}

/**
 * From entries in least-recently-used order (oldest first), the ids to delete
 * so that both the entry and the byte excess are covered: the shortest prefix
 * of the LRU order that does it. May cover less when `lru` is too short (the
 * shell then reads the next batch).
 */
export function chooseEvictions(lru: readonly { readonly id: number; readonly bytes: number }[], over: CacheTotals): { readonly ids: number[]; readonly freed: CacheTotals } {
  const ids: number[] = [];
  let entries = 0;
  let bytes = 0;
  for (const e of lru) {
    if (entries >= over.entries && bytes >= over.bytes) break;
    ids.push(e.id);
    entries++;
    bytes += e.bytes;
  }
  return { ids, freed: { entries, bytes } };
}

/** The bytes an entry is charged: its answer, its gram vector and a fixed share for its row and index rows. */
export function entryBytes(responseBytes: number, gramBytes: number, bands: number): number {
  return responseBytes + gramBytes + bands * 24 + 96;
}

/** The bytes an entry's prompt vector adds to its charge: its float32 values and a fixed share for its row. */
export function vectorBytes(dim: number): number {
  return dim * 4 + 48;
}
