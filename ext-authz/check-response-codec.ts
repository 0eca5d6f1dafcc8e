/**
 * A direct protobuf encoder for the CheckResponse objects that
 * check-response.ts builds (envoy.service.auth.v3.CheckResponse), replacing
 * proto-loader's generic serializer on the hot path (that one converts the
 * object into protobufjs message instances, then encodes them). One sizing
 * pass records every nested message's and string's length in order; one
 * writing pass replays them. The bytes are the ones proto-loader writes (a
 * unit test holds them equal over a corpus of responses): fields in field
 * number order, a scalar written whenever it is present (as protobufjs
 * does, even at its default). One deliberate difference: a lone UTF-16
 * surrogate is written as U+FFFD (Node's UTF-8), where protobufjs writes a
 * byte sequence that is not UTF-8 and that Envoy's parser rejects. Anything
 * else returns undefined and the caller falls back to proto-loader.
 *
 *   CheckResponse      status=1 (google.rpc.Status), denied_response=2, ok_response=3, dynamic_metadata=4 (Struct)
 *   google.rpc.Status  code=1 int32, message=2 string
 *   DeniedHttpResponse status=1 (HttpStatus code=1 enum), headers=2, body=3 string
 *   OkHttpResponse     headers=2, headers_to_remove=5, response_headers_to_add=6,
 *                      query_parameters_to_set=7 (QueryParameter key=1 value=2), query_parameters_to_remove=8
 *   HeaderValueOption  header=1 (HeaderValue key=1 value=2), append=2 (BoolValue value=1)
 *   Struct             fields=1 map<string, Value> (entry key=1 value=2)
 *   Value              null_value=1, number_value=2 double, string_value=3, bool_value=4, struct_value=5, list_value=6 (values=1)
 */
import type { ServiceDefinition } from '@grpc/grpc-js';

type Obj = Record<string, unknown>;

/** Thrown (and caught) by the sizing pass for anything it does not encode. */
const unsupported = new Error('not encodable here');

const VARINT = 0;
const I64 = 1;
const LEN = 2;

function varintSize(n: number): number {
  if (n < 0) return 10;
  if (n < 0x80) return 1;
  if (n < 0x4000) return 2;
  if (n < 0x200000) return 3;
  if (n < 0x10000000) return 4;
  return 5;
}

/** Tags of fields 1-15 take one byte. */
const TAG = 1;

const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array);

/**
 * Pass 1: the size of every length-delimited thing, in the order pass 2 writes
 * them (a message's size comes before its contents' sizes).
 */
class Sizer {
  readonly sizes: number[] = [];

  /** A string field: its byte length is recorded; returns the field's encoded size. */
  str(v: unknown): number {
    if (typeof v !== 'string') throw unsupported;
    const n = Buffer.byteLength(v, 'utf8');
    this.sizes.push(n);
    return TAG + varintSize(n) + n;
  }

  /** A message field: reserves its slot, sizes the contents, fills the slot. */
  msg(fn: () => number): number {
    const at = this.sizes.length;
    this.sizes.push(0);
    const n = fn();
    this.sizes[at] = n;
    return TAG + varintSize(n) + n;
  }
}

function int32(v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < -2147483648 || v > 2147483647) throw unsupported;
  return v;
}

function keysIn(o: Obj, allowed: readonly string[]): void {
  for (const k in o) if (o[k] !== undefined && !allowed.includes(k)) throw unsupported;
}

function list(v: unknown): unknown[] {
  if (!Array.isArray(v)) throw unsupported;
  return v;
}

function obj(v: unknown): Obj {
  if (!isObj(v)) throw unsupported;
  return v;
}

function sizeHeaderOption(z: Sizer, o: Obj): number {
  keysIn(o, ['header', 'append']);
  let n = 0;
  if (o.header !== undefined) {
    const h = obj(o.header);
    keysIn(h, ['key', 'value']);
    n += z.msg(() => (h.key !== undefined ? z.str(h.key) : 0) + (h.value !== undefined ? z.str(h.value) : 0));
  }
  if (o.append !== undefined) {
    const a = obj(o.append);
    keysIn(a, ['value']);
    if (a.value !== undefined && typeof a.value !== 'boolean') throw unsupported;
    n += z.msg(() => (a.value !== undefined ? TAG + 1 : 0));
  }
  return n;
}

function sizeRepeated(z: Sizer, v: unknown, each: (z: Sizer, o: Obj) => number): number {
  let n = 0;
  for (const x of list(v)) n += z.msg(() => each(z, obj(x)));
  return n;
}

function sizeStrings(z: Sizer, v: unknown): number {
  let n = 0;
  for (const x of list(v)) n += z.str(x);
  return n;
}

function sizeKeyValue(z: Sizer, o: Obj): number {
  keysIn(o, ['key', 'value']);
  return (o.key !== undefined ? z.str(o.key) : 0) + (o.value !== undefined ? z.str(o.value) : 0);
}

function sizeStruct(z: Sizer, o: Obj): number {
  keysIn(o, ['fields']);
  if (o.fields === undefined) return 0;
  const f = obj(o.fields);
  let n = 0;
  for (const k of Object.keys(f)) n += z.msg(() => z.str(k) + z.msg(() => sizeValue(z, obj(f[k]))));
  return n;
}

function sizeValue(z: Sizer, v: Obj): number {
  let kind: string | undefined;
  for (const k in v) {
    if (v[k] === undefined) continue;
    if (kind !== undefined) throw unsupported; // a oneof
    kind = k;
  }
  switch (kind) {
    case 'nullValue':
      if (v.nullValue !== 'NULL_VALUE' && v.nullValue !== 0) throw unsupported;
      return TAG + 1;
    case 'numberValue':
      if (typeof v.numberValue !== 'number') throw unsupported;
      return TAG + 8;
    case 'stringValue':
      return z.str(v.stringValue);
    case 'boolValue':
      if (typeof v.boolValue !== 'boolean') throw unsupported;
      return TAG + 1;
    case 'structValue':
      return z.msg(() => sizeStruct(z, obj(v.structValue)));
    case 'listValue':
      return z.msg(() => {
        const l = obj(v.listValue);
        keysIn(l, ['values']);
        return l.values === undefined ? 0 : sizeRepeated(z, l.values, sizeValue);
      });
    default:
      throw unsupported;
  }
}

function sizeResponse(z: Sizer, r: Obj): number {
  keysIn(r, ['status', 'deniedResponse', 'okResponse', 'dynamicMetadata']);
  if (r.deniedResponse !== undefined && r.okResponse !== undefined) throw unsupported; // a oneof
  let n = 0;
  if (r.status !== undefined) {
    const s = obj(r.status);
    keysIn(s, ['code', 'message']);
    n += z.msg(() => (s.code !== undefined ? TAG + varintSize(int32(s.code)) : 0) + (s.message !== undefined ? z.str(s.message) : 0));
  }
  if (r.deniedResponse !== undefined) {
    const d = obj(r.deniedResponse);
    keysIn(d, ['status', 'headers', 'body']);
    n += z.msg(() => {
      let m = 0;
      if (d.status !== undefined) {
        const s = obj(d.status);
        keysIn(s, ['code']);
        m += z.msg(() => (s.code !== undefined ? TAG + varintSize(int32(s.code)) : 0));
      }
      if (d.headers !== undefined) m += sizeRepeated(z, d.headers, sizeHeaderOption);
      if (d.body !== undefined) m += z.str(d.body);
      return m;
    });
  }
  if (r.okResponse !== undefined) {
    const o = obj(r.okResponse);
    keysIn(o, ['headers', 'headersToRemove', 'responseHeadersToAdd', 'queryParametersToSet', 'queryParametersToRemove']);
    n += z.msg(() => {
      let m = 0;
      if (o.headers !== undefined) m += sizeRepeated(z, o.headers, sizeHeaderOption);
      if (o.headersToRemove !== undefined) m += sizeStrings(z, o.headersToRemove);
      if (o.responseHeadersToAdd !== undefined) m += sizeRepeated(z, o.responseHeadersToAdd, sizeHeaderOption);
      if (o.queryParametersToSet !== undefined) m += sizeRepeated(z, o.queryParametersToSet, sizeKeyValue);
      if (o.queryParametersToRemove !== undefined) m += sizeStrings(z, o.queryParametersToRemove);
      return m;
    });
  }
  if (r.dynamicMetadata !== undefined) n += z.msg(() => sizeStruct(z, obj(r.dynamicMetadata)));
  return n;
}

/** Buffer's unvalidated UTF-8 writer (present in every Node release; the typed write() is the fallback). */
type FastBuffer = Buffer & { utf8Write?: (s: string, offset: number, length: number) => number };

/** Pass 2: the same traversal, writing; lengths come from the sizer, in order (types were checked there). */
class Writer {
  pos = 0;
  private next = 0;
  constructor(
    readonly buf: Buffer,
    private readonly sizes: number[],
  ) {}

  varint(n: number): void {
    if (n < 0) {
      // A negative int32/enum: sign-extended to 64 bits, ten bytes.
      let lo = n >>> 0;
      let hi = 0xffffffff;
      for (let i = 0; i < 9; i++) {
        this.buf[this.pos++] = (lo & 0x7f) | 0x80;
        lo = (lo >>> 7) | ((hi & 0x7f) << 25);
        hi >>>= 7;
      }
      this.buf[this.pos++] = 1;
      return;
    }
    while (n >= 0x80) {
      this.buf[this.pos++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    this.buf[this.pos++] = n;
  }

  tag(field: number, wire: number): void {
    this.buf[this.pos++] = (field << 3) | wire;
  }

  str(field: number, s: unknown): void {
    const n = this.sizes[this.next++]!;
    this.tag(field, LEN);
    this.varint(n);
    const b = this.buf as FastBuffer;
    this.pos += b.utf8Write ? b.utf8Write(s as string, this.pos, n) : b.write(s as string, this.pos, n, 'utf8');
  }

  msg(field: number, fn: () => void): void {
    this.tag(field, LEN);
    this.varint(this.sizes[this.next++]!);
    fn();
  }

  uint(field: number, v: unknown): void {
    this.tag(field, VARINT);
    this.varint(v as number);
  }

  bool(field: number, v: unknown): void {
    this.tag(field, VARINT);
    this.buf[this.pos++] = v ? 1 : 0;
  }
}

function writeHeaderOption(w: Writer, o: Obj): void {
  if (o.header !== undefined) {
    const h = o.header as Obj;
    w.msg(1, () => {
      if (h.key !== undefined) w.str(1, h.key);
      if (h.value !== undefined) w.str(2, h.value);
    });
  }
  if (o.append !== undefined) {
    const a = o.append as Obj;
    w.msg(2, () => {
      if (a.value !== undefined) w.bool(1, a.value);
    });
  }
}

function writeRepeated(w: Writer, field: number, v: unknown, each: (w: Writer, o: Obj) => void): void {
  for (const x of v as Obj[]) w.msg(field, () => each(w, x));
}

function writeStrings(w: Writer, field: number, v: unknown): void {
  for (const s of v as string[]) w.str(field, s);
}

function writeKeyValue(w: Writer, o: Obj): void {
  if (o.key !== undefined) w.str(1, o.key);
  if (o.value !== undefined) w.str(2, o.value);
}

function writeStruct(w: Writer, o: Obj): void {
  if (o.fields === undefined) return;
  const f = o.fields as Obj;
  for (const k of Object.keys(f)) {
    w.msg(1, () => {
      w.str(1, k);
      w.msg(2, () => writeValue(w, f[k] as Obj));
    });
  }
}

function writeValue(w: Writer, v: Obj): void {
  if (v.nullValue !== undefined) w.uint(1, 0);
  else if (v.numberValue !== undefined) {
    w.tag(2, I64);
    w.buf.writeDoubleLE(v.numberValue as number, w.pos);
    w.pos += 8;
  } else if (v.stringValue !== undefined) w.str(3, v.stringValue);
  else if (v.boolValue !== undefined) w.bool(4, v.boolValue);
  else if (v.structValue !== undefined) w.msg(5, () => writeStruct(w, v.structValue as Obj));
  else {
    const l = v.listValue as Obj;
    w.msg(6, () => {
      if (l.values !== undefined) writeRepeated(w, 1, l.values, writeValue);
    });
  }
}

function writeResponse(w: Writer, r: Obj): void {
  if (r.status !== undefined) {
    const s = r.status as Obj;
    w.msg(1, () => {
      if (s.code !== undefined) w.uint(1, s.code);
      if (s.message !== undefined) w.str(2, s.message);
    });
  }
  if (r.deniedResponse !== undefined) {
    const d = r.deniedResponse as Obj;
    w.msg(2, () => {
      if (d.status !== undefined) {
        const s = d.status as Obj;
        w.msg(1, () => {
          if (s.code !== undefined) w.uint(1, s.code);
        });
      }
      if (d.headers !== undefined) writeRepeated(w, 2, d.headers, writeHeaderOption);
      if (d.body !== undefined) w.str(3, d.body);
    });
  }
  if (r.okResponse !== undefined) {
    const o = r.okResponse as Obj;
    w.msg(3, () => {
      if (o.headers !== undefined) writeRepeated(w, 2, o.headers, writeHeaderOption);
      if (o.headersToRemove !== undefined) writeStrings(w, 5, o.headersToRemove);
      if (o.responseHeadersToAdd !== undefined) writeRepeated(w, 6, o.responseHeadersToAdd, writeHeaderOption);
      if (o.queryParametersToSet !== undefined) writeRepeated(w, 7, o.queryParametersToSet, writeKeyValue);
      if (o.queryParametersToRemove !== undefined) writeStrings(w, 8, o.queryParametersToRemove);
    });
  }
  if (r.dynamicMetadata !== undefined) w.msg(4, () => writeStruct(w, r.dynamicMetadata as Obj));
}

/** The wire bytes of a CheckResponse object, or undefined when it holds anything this encoder does not know. */
export function encodeCheckResponse(value: unknown): Buffer | undefined {
  if (!isObj(value)) return undefined;
  const z = new Sizer();
  let total: number;
  try {
    total = sizeResponse(z, value);
  } catch (e) {
    if (e === unsupported) return undefined;
    throw e;
  }
  const w = new Writer(Buffer.allocUnsafe(total), z.sizes);
  writeResponse(w, value);
  return w.pos === total ? w.buf : undefined;
}

/** The Authorization service definition with Check's responses written by encodeCheckResponse (proto-loader's serializer stays the fallback). */
export function withDirectCheckEncoding(authorization: ServiceDefinition): ServiceDefinition {
  const check = authorization.Check!;
  return { ...authorization, Check: { ...check, responseSerialize: (v: unknown) => encodeCheckResponse(v) ?? check.responseSerialize(v) } };
}
