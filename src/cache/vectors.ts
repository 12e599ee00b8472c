/**
 * Semantic matching: the embedding vectors of stored prompts, kept in memory
 * for a brute-force cosine scan. Pure (no I/O, no clock).
 *
 * Vectors are normalised once, when they enter, so a cosine is a dot product.
 * One index per embedding model (vectors of different models do not compare);
 * all of an index's vectors live in one contiguous Float32Array, one row of
 * `dim` floats (padded to a multiple of 8) each, with parallel typed arrays for the entry id, the scope
 * and the creation time. Removing swaps the last row into the hole, so the
 * rows stay dense and a scan touches memory in order.
 *
 * The scan runs in a small WebAssembly SIMD kernel (dot-kernel.ts) whose
 * memory holds the rows, else in JavaScript. Why a scan and not an
 * approximate index (measured, scripts/bench-cache.ts): at 100,000 stored
 * prompts of 384 floats a scan is 38 M multiply-adds, milliseconds in SIMD,
 * paid only when every tier of a route is down; exact, nothing to build or
 * tune, nothing to rebuild at start beyond reading the blobs.
 */

import { dotKernel, KERNEL_LANES, type DotKernel } from "./dot-kernel.ts";

/** Whether typed arrays are little-endian here (they are on every platform llmsup runs on): blobs are then copied, not converted. */
const LITTLE_ENDIAN = new Uint8Array(Float32Array.of(1).buffer)[3] === 0x3f;

/** A vector as SQLite stores it: little-endian float32. */
export function packFloat32(v: Float32Array): Uint8Array {
  if (LITTLE_ENDIAN) return new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength));
  const out = new Uint8Array(v.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < v.length; i++) view.setFloat32(i * 4, v[i]!, true);
  return out;
}

/** The stored vector, or undefined when the blob is not a whole number of finite float32s. */
export function unpackFloat32(blob: Uint8Array): Float32Array | undefined {
  if (blob.byteLength === 0 || blob.byteLength % 4 !== 0) return undefined;
  const out = new Float32Array(blob.byteLength / 4);
  if (LITTLE_ENDIAN) new Uint8Array(out.buffer).set(blob);
  else {
    const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
    for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
  }
  for (let i = 0; i < out.length; i++) if (!Number.isFinite(out[i]!)) return undefined;
  return out;
}

/** The unit vector along `v`, or undefined for an empty, zero or non-finite one (it says nothing). */
export function normalise(v: ArrayLike<number>): Float32Array | undefined {
  if (v.length === 0) return undefined;
  let sum = 0;
  for (let i = 0; i < v.length; i++) {
    const x = v[i]!;
    if (!Number.isFinite(x)) return undefined;
    sum += x * x;
  }
  if (!(sum > 0)) return undefined;
  const inv = 1 / Math.sqrt(sum);
  const out = new Float32Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = v[i]! * inv;
  return out;
}

/** The dot product of `q` with the row of `data` that starts at `offset` (both `q.length` long). */
export function dotAt(q: Float32Array, data: Float32Array, offset: number): number {
  const n = q.length;
  let a = 0;
  let b = 0;
  let c = 0;
  let d = 0;
  let i = 0;
  // Four accumulators: independent additions the CPU can overlap.
  for (; i + 4 <= n; i += 4) {
    const o = offset + i;
    a += q[i]! * data[o]!;
    b += q[i + 1]! * data[o + 1]!;
    c += q[i + 2]! * data[o + 2]!;
    d += q[i + 3]! * data[o + 3]!;
  }
  for (; i < n; i++) a += q[i]! * data[offset + i]!;
  return a + b + c + d;
}

/** The cosine of two vectors of any length (0 when either is zero or they differ in length). */
export function cosineOf(x: ArrayLike<number>, y: ArrayLike<number>): number {
  if (x.length !== y.length) return 0;
  const a = normalise(x);
  const b = normalise(y);
  return a && b ? dotAt(a, b, 0) : 0;
}

export interface SemanticMatch {
  readonly id: number;
  readonly similarity: number;
  readonly createdAt: number;
}

export interface SemanticQuery {
  /** The question's vector, normalised (normalise()). */
  readonly vector: Float32Array;
  /** The scope every match shares (key.ts scope32). */
  readonly scope: number;
  /** The numbers in the question: a match must contain the same ones. */
  readonly numbers: string;
  /** Entries created before this are expired. */
  readonly notBefore: number;
  readonly threshold: number;
}

/** Whether a candidate beats the best so far: more similar, or as similar and newer. Pure. */
export function better(s: number, createdAt: number, best: SemanticMatch | undefined): boolean {
  return !best || s > best.similarity || (s === best.similarity && createdAt > best.createdAt);
}

const INITIAL_ROWS = 64;
const PAGE = 65_536;

export interface VectorIndexOptions {
  /** Scan with the WebAssembly SIMD kernel where the runtime has it (default); false: JavaScript only. */
  readonly simd?: boolean;
  /** Rows to make room for at once (the vectors a store holds, read at open): no growing while they are read. */
  readonly capacity?: number;
}

export class VectorIndex {
  readonly dim: number;
  /** Floats per row: dim padded to KERNEL_LANES (the padding stays zero). */
  private readonly stride: number;
  private readonly kernel?: DotKernel;
  private capacity = INITIAL_ROWS;
  /** The rows, from float `base`; with the kernel a view of its memory: [query stride][rows…][scores…]. */
  private data!: Float32Array;
  private base = 0;
  private ids: Float64Array;
  private scopes: Uint32Array;
  private created: Float64Array;
  private numbers: string[] = [];
  private readonly rowOf = new Map<number, number>();
  size = 0;

  constructor(dim: number, options: VectorIndexOptions = {}) {
    if (!Number.isInteger(dim) || dim <= 0) throw new RangeError(`a vector index needs a positive dimension, not ${dim}`);
    this.dim = dim;
    this.stride = Math.ceil(dim / KERNEL_LANES) * KERNEL_LANES;
    if (options.simd !== false) this.kernel = dotKernel();
    this.capacity = Math.max(INITIAL_ROWS, Math.ceil(options.capacity ?? 0));
    this.ids = new Float64Array(this.capacity);
    this.scopes = new Uint32Array(this.capacity);
    this.created = new Float64Array(this.capacity);
    if (this.kernel) this.mapMemory();
    else this.data = new Float32Array(this.capacity * this.stride);
  }

  /** Whether scans run in the SIMD kernel. */
  get simd(): boolean {
    return this.kernel !== undefined;
  }

  /** Grows the kernel's memory to hold `capacity` rows and their scores, and views it again (a grown memory detaches old views). */
  private mapMemory(): void {
    const memory = this.kernel!.memory;
    const need = (this.stride + this.capacity * this.stride + this.capacity) * 4;
    const pages = Math.ceil(need / PAGE) - memory.buffer.byteLength / PAGE;
    if (pages > 0) memory.grow(pages);
    this.data = new Float32Array(memory.buffer);
    this.base = this.stride;
  }

  /** Bytes the index holds (its buffers at their current capacity). */
  get capacityBytes(): number {
    // The numbers' strings are shared (almost all ""): a reference each.
    return this.data.byteLength + this.ids.byteLength + this.scopes.byteLength + this.created.byteLength + this.capacity * 8;
  }

  has(id: number): boolean {
    return this.rowOf.has(id);
  }

  /** A quarter more rows at a time: at most a fifth of the buffer unused, amortised copies. */
  private grow(): void {
    const rows = this.capacity + Math.max(INITIAL_ROWS, Math.ceil(this.capacity / 4));
    if (this.kernel) {
      this.capacity = rows;
      this.mapMemory();
    } else {
      const data = new Float32Array(rows * this.stride);
      data.set(this.data);
      this.data = data;
      this.capacity = rows;
    }
    const ids = new Float64Array(rows);
    ids.set(this.ids);
    this.ids = ids;
    const scopes = new Uint32Array(rows);
    scopes.set(this.scopes);
    this.scopes = scopes;
    const created = new Float64Array(rows);
    created.set(this.created);
    this.created = created;
  }

  /** Adds (or replaces) an entry's vector; `vector` is normalised already and `dim` long. */
  set(id: number, vector: Float32Array, scope: number, numbers: string, createdAt: number): void {
    if (vector.length !== this.dim) throw new RangeError(`a vector of ${vector.length} values in an index of ${this.dim}`);
    let row = this.rowOf.get(id);
    if (row === undefined) {
      if (this.size === this.capacity) this.grow();
      row = this.size++;
      this.rowOf.set(id, row);
    }
    this.data.set(vector, this.base + row * this.stride);
    this.ids[row] = id;
    this.scopes[row] = scope >>> 0;
    this.created[row] = createdAt;
    this.numbers[row] = numbers;
  }

  /** A newer answer under the same key: same prompt, same vector, a new creation time. */
  touchCreated(id: number, createdAt: number): void {
    const row = this.rowOf.get(id);
    if (row !== undefined) this.created[row] = createdAt;
  }

  remove(id: number): boolean {
    const row = this.rowOf.get(id);
    if (row === undefined) return false;
    this.rowOf.delete(id);
    const last = --this.size;
    if (row !== last) {
      const from = this.base + last * this.stride;
      this.data.copyWithin(this.base + row * this.stride, from, from + this.stride);
      const moved = this.ids[last]!;
      this.ids[row] = moved;
      this.scopes[row] = this.scopes[last]!;
      this.created[row] = this.created[last]!;
      this.numbers[row] = this.numbers[last]!;
      this.rowOf.set(moved, row);
    }
    this.numbers.length = last;
    return true;
  }

  /** The most similar entry of the same scope and numbers, not expired, at or above the threshold (newest on a tie). */
  nearest(q: SemanticQuery): SemanticMatch | undefined {
    if (q.vector.length !== this.dim || this.size === 0) return undefined;
    const scope = q.scope >>> 0;
    let scores: Float32Array | undefined;
    if (this.kernel) {
      // Every row's score at once, then the filters over the scores.
      this.data.set(q.vector, 0);
      const out = this.base + this.capacity * this.stride;
      this.kernel.scan(0, this.base * 4, this.size, this.stride * 4, out * 4);
      scores = this.data.subarray(out, out + this.size);
    }
    let best: SemanticMatch | undefined;
    for (let row = 0; row < this.size; row++) {
      if (this.scopes[row] !== scope) continue;
      const createdAt = this.created[row]!;
      if (createdAt < q.notBefore || this.numbers[row] !== q.numbers) continue;
      const s = scores ? scores[row]! : dotAt(q.vector, this.data, this.base + row * this.stride);
      if (s < q.threshold || !better(s, createdAt, best)) continue;
      best = { id: this.ids[row]!, similarity: Math.min(1, s), createdAt };
    }
    return best;
  }
}

/** The indexes of a store, one per embedding model. */
export class VectorIndexes {
  private readonly byModel = new Map<string, VectorIndex>();
  /** Which model's index holds an entry. */
  private readonly modelOf = new Map<number, string>();
  /** Rows to make room for when a model's index is made (reserve()). */
  private readonly expected = new Map<string, number>();

  /** Says how many vectors of a model are about to be added (a store's, at open): its index is made that large at once. */
  reserve(model: string, rows: number): void {
    this.expected.set(model, rows);
  }

  get size(): number {
    return this.modelOf.size;
  }

  get bytes(): number {
    let n = 0;
    for (const ix of this.byModel.values()) n += ix.capacityBytes;
    return n;
  }

  of(model: string): VectorIndex | undefined {
    return this.byModel.get(model);
  }

  /** The dimension the model's vectors have here (undefined before its first). */
  dimOf(model: string): number | undefined {
    return this.byModel.get(model)?.dim;
  }

  /** Adds an entry's normalised vector; false when its length differs from the model's earlier vectors. */
  set(model: string, id: number, vector: Float32Array, scope: number, numbers: string, createdAt: number): boolean {
    let ix = this.byModel.get(model);
    if (!ix) this.byModel.set(model, (ix = new VectorIndex(vector.length, { capacity: this.expected.get(model) })));
    if (ix.dim !== vector.length) return false;
    const other = this.modelOf.get(id);
    if (other !== undefined && other !== model) this.byModel.get(other)?.remove(id);
    ix.set(id, vector, scope, numbers, createdAt);
    this.modelOf.set(id, model);
    return true;
  }

  has(id: number): boolean {
    return this.modelOf.has(id);
  }

  /** The dimension of an entry's vector (undefined without one). */
  dimOfEntry(id: number): number | undefined {
    const m = this.modelOf.get(id);
    return m === undefined ? undefined : this.byModel.get(m)?.dim;
  }

  touchCreated(id: number, createdAt: number): void {
    const m = this.modelOf.get(id);
    if (m !== undefined) this.byModel.get(m)?.touchCreated(id, createdAt);
  }

  remove(id: number): void {
    const m = this.modelOf.get(id);
    if (m === undefined) return;
    this.modelOf.delete(id);
    this.byModel.get(m)?.remove(id);
  }

  clear(): void {
    this.byModel.clear();
    this.modelOf.clear();
  }
}
