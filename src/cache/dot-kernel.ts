/**
 * The semantic scan's inner loop: the dot product of one query with every row
 * of a matrix, in WebAssembly SIMD (f32x4, two accumulators), written here as
 * bytes so nothing is built or downloaded. About four to eight times the
 * plain JavaScript loop (scripts/bench-cache.ts measures both). Where the
 * runtime has no WebAssembly SIMD, `dotKernel()` is undefined and vectors.ts
 * scans in JavaScript.
 *
 * The module exports its memory `mem` and
 *   scan(q, data, rows, strideBytes, out)
 * which writes, for each row r, the f32 dot product of the stride at byte
 * offset `q` with the stride at `data + r·strideBytes` to `out + 4r`. The
 * stride is a whole number of 32 bytes (8 floats); rows are padded with zeros.
 */

/** Floats a row is padded to a multiple of. */
export const KERNEL_LANES = 8;

function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

const section = (id: number, body: number[]) => [id, ...leb(body.length), ...body];
const name = (s: string) => [...leb(s.length), ...Buffer.from(s, "ascii")];

// Opcodes used below.
const GET = 0x20;
const SET = 0x21;
const I32_CONST = 0x41;
const I32_ADD = 0x6a;
const I32_SHL = 0x74;
const I32_GE_U = 0x4f;
const F32_ADD = 0x92;
const F32_STORE = 0x38;
const BLOCK = 0x02;
const LOOP = 0x03;
const VOID = 0x40;
const BR = 0x0c;
const BR_IF = 0x0d;
const END = 0x0b;
const SIMD = 0xfd;
const V128_LOAD = [SIMD, 0x00];
const V128_ZERO = [SIMD, 0x0c, ...new Array<number>(16).fill(0)];
const F32X4_ADD = [SIMD, 0xe4, 0x01];
const F32X4_MUL = [SIMD, 0xe6, 0x01];
const F32X4_LANE = (lane: number) => [SIMD, 0x1f, lane];

// Locals: params q=0 data=1 rows=2 stride=3 out=4; r=5 i=6 (i32), acc0=7 acc1=8 (v128).
const Q = 0, DATA = 1, ROWS = 2, STRIDE = 3, OUT = 4, R = 5, I = 6, A0 = 7, A1 = 8;

/** acc += q[i + off] · data[i + off] (f32x4). */
const madd = (acc: number, off: number) => [
  GET, acc,
  GET, Q, GET, I, I32_ADD, ...V128_LOAD, 0x02, off,
  GET, DATA, GET, I, I32_ADD, ...V128_LOAD, 0x02, off,
  ...F32X4_MUL, ...F32X4_ADD, SET, acc,
];

const body = [
  0x02, 0x02, 0x7f, 0x02, 0x7b, // locals: 2 × i32, 2 × v128
  BLOCK, VOID,
  LOOP, VOID,
  GET, R, GET, ROWS, I32_GE_U, BR_IF, 1,
  ...V128_ZERO, SET, A0,
  ...V128_ZERO, SET, A1,
  I32_CONST, 0, SET, I,
  BLOCK, VOID,
  LOOP, VOID,
  GET, I, GET, STRIDE, I32_GE_U, BR_IF, 1,
  ...madd(A0, 0),
  ...madd(A1, 16),
  GET, I, I32_CONST, 32, I32_ADD, SET, I,
  BR, 0,
  END,
  END,
  GET, A0, GET, A1, ...F32X4_ADD, SET, A0,
  GET, OUT, GET, R, I32_CONST, 2, I32_SHL, I32_ADD,
  GET, A0, ...F32X4_LANE(0),
  GET, A0, ...F32X4_LANE(1), F32_ADD,
  GET, A0, ...F32X4_LANE(2), F32_ADD,
  GET, A0, ...F32X4_LANE(3), F32_ADD,
  F32_STORE, 0x02, 0x00,
  GET, DATA, GET, STRIDE, I32_ADD, SET, DATA,
  GET, R, I32_CONST, 1, I32_ADD, SET, R,
  BR, 0,
  END,
  END,
  END,
];

const BYTES = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  ...section(1, [0x01, 0x60, 0x05, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x00]),
  ...section(3, [0x01, 0x00]),
  ...section(5, [0x01, 0x00, 0x01]),
  ...section(7, [0x02, ...name("scan"), 0x00, 0x00, ...name("mem"), 0x02, 0x00]),
  ...section(10, [0x01, ...leb(body.length), ...body]),
]);

/** The part of the WebAssembly API used here (the compiler's libraries here leave it out; Node has it). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { readonly exports: unknown };
}
const wasm = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

export interface DotKernel {
  readonly memory: WasmMemory;
  scan(q: number, data: number, rows: number, strideBytes: number, out: number): void;
}

let compiled: object | null | undefined;

/** A fresh kernel instance with its own memory (one page), or undefined without WebAssembly SIMD. */
export function dotKernel(): DotKernel | undefined {
  if (compiled === undefined) {
    try {
      compiled = wasm?.validate(BYTES) ? new wasm.Module(BYTES) : null;
    } catch {
      compiled = null;
    }
  }
  if (!compiled || !wasm) return undefined;
  const instance = new wasm.Instance(compiled, {});
  const e = instance.exports as { scan: DotKernel["scan"]; mem: WasmMemory };
  return { memory: e.mem, scan: e.scan };
}
