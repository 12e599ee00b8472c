import { test } from "node:test";
import assert from "node:assert/strict";
import { formatDuration, formatSize, parseDuration, parseSize } from "../../src/config/units.ts";

test("durations need a unit and combine units", () => {
  assert.equal(parseDuration("250ms"), 250);
  assert.equal(parseDuration("10s"), 10_000);
  assert.equal(parseDuration("15m"), 900_000);
  assert.equal(parseDuration("2h"), 7_200_000);
  assert.equal(parseDuration("7d"), 604_800_000);
  assert.equal(parseDuration("1m30s"), 90_000);
  assert.equal(parseDuration("1.5s"), 1_500);
  assert.equal(parseDuration("0"), 0);
  assert.equal(parseDuration("0s"), 0);
  for (const bad of ["10", "", "s", "10 s", "10sec", "-5s", "1m 30s", "5x"]) assert.equal(parseDuration(bad), undefined, bad);
});

test("durations format compactly", () => {
  assert.equal(formatDuration(250), "250ms");
  assert.equal(formatDuration(10_000), "10s");
  assert.equal(formatDuration(112_000), "1m52s");
  assert.equal(formatDuration(900_000), "15m");
  assert.equal(formatDuration(7_500_000), "2h5m");
  assert.equal(formatDuration(2.5 * 86_400_000), "2d12h");
});

test("sizes accept decimal and binary units", () => {
  assert.equal(parseSize("4MiB"), 4 * 1024 * 1024);
  assert.equal(parseSize("500kB"), 500_000);
  assert.equal(parseSize("2GiB"), 2 * 1024 ** 3);
  assert.equal(parseSize("1024"), 1024);
  assert.equal(parseSize("12 parsecs"), undefined);
  assert.equal(formatSize(3.5 * 1024 * 1024), "3.5MiB");
});
