import { test } from "node:test";
import assert from "node:assert/strict";
import { AlertLog, EventHub, History } from "../../src/daemon/event-hub.ts";
import { memoryLogger } from "../helpers/supervise.ts";
import type { AlertEvent } from "../../src/alerts/events.ts";

test("event hub: a consumer that throws is logged and the others still get every event", () => {
  const mem = memoryLogger();
  const seen: number[] = [];
  const hub = new EventHub<number>(mem.logger, () => {
    throw new Error("broken consumer");
  });
  const off = hub.subscribe((e) => seen.push(e));
  hub.emit(1);
  hub.emit(2);
  off();
  hub.emit(3);
  assert.deepEqual(seen, [1, 2]);
  assert.equal(mem.lines().filter((l) => l.event === "daemon.event_consumer_failed").length, 3);
});

test("history keeps the newest entries up to its bound; the alert log keeps one day", () => {
  const h = new History([{ at: 1, kind: "daemon", summary: "a" }], 3);
  for (let i = 2; i <= 5; i++) h.add({ at: i, kind: "daemon", summary: String(i) });
  assert.deepEqual(h.all().map((e) => e.at), [3, 4, 5]);
  const log = new AlertLog(100);
  const day = 86_400_000;
  const a = (at: number) => ({ kind: "daemon_started", at, version: "x", pid: 1, config: "c" }) as AlertEvent;
  log.add(a(0), 0);
  log.add(a(day / 2), day / 2);
  log.add(a(day + 10), day + 10);
  assert.deepEqual(log.all().map((e) => e.at), [day / 2, day + 10], "older than a day is gone");
  assert.deepEqual(log.since(day).map((e) => e.at), [day + 10]);
});
