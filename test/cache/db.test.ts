/** The store's file layer: band candidates through FTS5, and gram frequencies that survive a daemon killed between writes. */
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { BUCKET_CAP, CacheDb, type NewEntry } from "../../src/cache/db.ts";
import { similarityText } from "../../src/cache/key.ts";
import { bandKeys, gramVector, minhash } from "../../src/cache/similarity.ts";
import { loadSqlite, type SqliteModule } from "../../src/cache/sqlite.ts";
import { tempDir } from "../helpers/tmp.ts";

const sqlite = loadSqlite() as SqliteModule;
let next = 1;
function entry(text: string, scope = 1, at = 0): NewEntry {
  const grams = gramVector(similarityText(text));
  const id = next++;
  return { key: id.toString(16).padStart(32, "0"), route: "r", at, numbers: "", grams, bands: bandKeys(minhash(grams.ids), scope), response: `{"n":${id}}`, bytes: 100 };
}
const bandsOf = (text: string, scope = 1) => bandKeys(minhash(gramVector(similarityText(text)).ids), scope);

test("candidates: entries sharing bands, most shared first, within the scope, not expired, gone once deleted", (t) => {
  const db = new CacheDb(sqlite, path.join(tempDir(t), "cache.sqlite"));
  t.after(() => db.close());
  db.put([entry("how do gpus fail under heavy load", 1, 10), entry("how do gpus fail under a heavy load", 1, 20), entry("what is the capital of france", 1, 30), entry("how do gpus fail under heavy load", 2, 40)]);
  const ids = (c: { id: number }[]) => c.map((x) => x.id);
  const found = db.candidates(bandsOf("how do gpus fail under heavy load"), 0, 10);
  assert.ok(found.length >= 1 && found.length <= 2, JSON.stringify(ids(found)));
  assert.equal(found[0]!.createdAt, 10, "the identical prompt shares every band: first");
  assert.ok(found[0]!.grams && found[0]!.grams.ids.length > 0);
  assert.ok(!found.some((c) => c.createdAt === 30 || c.createdAt === 40), "not the unrelated one, nor the other scope");
  assert.deepEqual(db.candidates(bandsOf("how do gpus fail under heavy load"), 15, 10).map((c) => c.createdAt).filter((a) => a === 10), [], "expired ones are left out");
  db.delete([found[0]!.id]);
  assert.ok(!ids(db.candidates(bandsOf("how do gpus fail under heavy load"), 0, 10)).includes(found[0]!.id));
  assert.equal(db.entries, 3);
  assert.equal(db.indexed, 3);
});

test("a band shared by more than BUCKET_CAP entries tells nothing apart and is skipped", (t) => {
  const db = new CacheDb(sqlite, path.join(tempDir(t), "cache.sqlite"));
  t.after(() => db.close());
  const same = entry("one prompt stored many times");
  db.put(Array.from({ length: BUCKET_CAP + 1 }, (_, i) => ({ ...same, key: (1e6 + i).toString(16).padStart(32, "0") })));
  assert.equal(db.entries, BUCKET_CAP + 1);
  assert.deepEqual(db.candidates(same.bands!, 0, 10), [], "every band is crowded");
  db.put([entry("a different prompt altogether")]);
  assert.equal(db.candidates(bandsOf("a different prompt altogether"), 0, 10).length, 1);
});

test("gram frequencies not yet written when the daemon dies are recounted at the next open", (t) => {
  const file = path.join(tempDir(t), "cache.sqlite");
  const a = new CacheDb(sqlite, file);
  const first = entry("how do gpus fail");
  a.put([first, entry("how do disks fail")]);
  a.syncDf();
  a.put([entry("why do fans fail")]);
  a.delete([1, 2, 3, 4, 5, 6, 7, 8, 9, 10].filter((id) => a.exact(first.key, 0)?.id === id));
  const expected = new Map(a.df);
  assert.ok(a.dfPending > 0);
  // Killed: the connection goes without syncDf.
  (a as unknown as { db: { close(): void } }).db.close();
  const b = new CacheDb(sqlite, file);
  assert.equal(b.dfRebuilt, true);
  assert.deepEqual(new Map([...b.df].sort()), new Map([...expected].sort()));
  assert.equal(b.indexed, 2);
  assert.equal(b.entries, 2);
  b.close();
  const c = new CacheDb(sqlite, file);
  assert.equal(c.dfRebuilt, false, "a clean close writes them");
  c.close();
});
