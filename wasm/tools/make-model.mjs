// Writes a random-weight byte-level TransformerWrapper (256 tokens) as a picoformer safetensors
// file, for benchmarks and the web demo until a trained model is bundled:
//   node tools/make-model.mjs OUT [dim=256] [depth=4]
// Deterministic: the same arguments give the same bytes.
import { writeFileSync } from 'node:fs';

export function makeModel({ dim = 256, depth = 4, heads = 4, vocab = 256 } = {}) {
  const dimHead = dim / heads;
  const ff = 4 * dim;
  const shapes = [['token_emb.emb.weight', [vocab, dim]]];
  for (let b = 0; b < depth; b++) {
    const p = (l, s) => `attn_layers.layers.${l}.${s}`;
    const [a, f] = [2 * b, 2 * b + 1];
    shapes.push(
      [p(a, '0.0.gamma'), [dim]],
      [p(a, '1.to_q.weight'), [dim, dim]],
      [p(a, '1.to_k.weight'), [dim, dim]],
      [p(a, '1.to_v.weight'), [dim, dim]],
      [p(a, '1.to_out.weight'), [dim, dim]],
      [p(f, '0.0.gamma'), [dim]],
      [p(f, '1.ff.0.0.weight'), [ff, dim]],
      [p(f, '1.ff.0.0.bias'), [ff]],
      [p(f, '1.ff.2.weight'), [dim, ff]],
      [p(f, '1.ff.2.bias'), [dim]],
    );
  }
  shapes.push(['attn_layers.final_norm.gamma', [dim]]);
  const meta = {
    decoder: { dim, depth, heads, attn_dim_head: dimHead, rotary_pos_emb: true },
    wrapper: { num_tokens: vocab, max_seq_len: 0, tie_embedding: true },
  };
  const header = { __metadata__: { x_transformers: JSON.stringify(meta), format: 'picoformer-1' } };
  let offset = 0;
  for (const [name, shape] of shapes) {
    const bytes = 4 * shape.reduce((a, b) => a * b, 1);
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8); // keep the data 8-byte aligned
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(new TextEncoder().encode(json), 8);
  const data = new Float32Array(out.buffer, 8 + json.length, offset / 4);
  let s = 0x5eedn;
  const rand = () => { // SplitMix64 → uniform in [-1, 1)
    s = (s + 0x9e3779b97f4a7c15n) & 0xffffffffffffffffn;
    let z = s;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & 0xffffffffffffffffn;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & 0xffffffffffffffffn;
    return Number((z ^ (z >> 31n)) >> 40n) / 2 ** 23 - 1;
  };
  let at = 0;
  for (const [name, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    // Gains are stored minus one (x-transformers adds the unit offset): small values.
    const scale = shape.length === 2 ? 1.7 / Math.sqrt(shape[1]) : 0.1;
    for (let i = 0; i < n; i++) data[at + i] = scale * rand();
    at += n;
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [out, dim = '256', depth = '4'] = process.argv.slice(2);
  writeFileSync(out, makeModel({ dim: Number(dim), depth: Number(depth) }));
}
