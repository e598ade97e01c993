// Renders media/icon.png (128x128, the marketplace icon) from geometry, with no image tooling.
// A rounded orange tile with a white tunnel arch and a small "MCP" plug bar. Run: node scripts/make-icon.mjs
import { writeFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';

const N = 128;
const px = Buffer.alloc(N * N * 4);
const crcTable = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
const crc = (buf) => {
  let c = 0xffffffff;
  for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
};
const chunk = (type, data) => {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type), data]);
  const c = Buffer.alloc(4);
  c.writeUInt32BE(crc(td));
  return Buffer.concat([len, td, c]);
};
// coverage by 4x4 supersampling
const inside = (x, y) => {
  const r = 22;
  const cx = Math.min(Math.max(x, r + 4), N - r - 4);
  const cy = Math.min(Math.max(y, r + 4), N - r - 4);
  if ((x - cx) ** 2 + (y - cy) ** 2 > r * r) return null; // outside the rounded tile
  // tunnel arch: ring between radii 26 and 40 centred at (64, 78), upper half + legs
  const dx = x - 64, dy = y - 80;
  const d = Math.hypot(dx, dy);
  const arch = (dy <= 0 && d >= 24 && d <= 38) || (dy > 0 && dy < 22 && Math.abs(dx) >= 24 && Math.abs(dx) <= 38);
  const road = y >= 100 && y <= 106 && x >= 20 && x <= 108;
  const dot = Math.hypot(x - 64, y - 72) <= 7;
  if (arch || road || dot) return [255, 255, 255];
  const t = y / N; // gradient orange
  return [Math.round(246 - 20 * t), Math.round(130 - 40 * t), Math.round(31 + 10 * t)];
};
for (let y = 0; y < N; y++)
  for (let x = 0; x < N; x++) {
    let r = 0, g = 0, b = 0, a = 0;
    for (let sy = 0; sy < 4; sy++)
      for (let sx = 0; sx < 4; sx++) {
        const c = inside(x + (sx + 0.5) / 4, y + (sy + 0.5) / 4);
        if (c) { r += c[0]; g += c[1]; b += c[2]; a++; }
      }
    const i = (y * N + x) * 4;
    if (a) { px[i] = r / a; px[i + 1] = g / a; px[i + 2] = b / a; px[i + 3] = Math.round((a / 16) * 255); }
  }
const raw = Buffer.alloc((N * 4 + 1) * N);
for (let y = 0; y < N; y++) px.copy(raw, y * (N * 4 + 1) + 1, y * N * 4, (y + 1) * N * 4);
const ihdr = Buffer.alloc(13);
ihdr.writeUInt32BE(N, 0); ihdr.writeUInt32BE(N, 4); ihdr[8] = 8; ihdr[9] = 6;
writeFileSync(new URL('../media/icon.png', import.meta.url), Buffer.concat([
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw, { level: 9 })), chunk('IEND', Buffer.alloc(0)),
]));
